# pragma version 0.4.3
"""
@title SwarmRounds
@license Apache-2.0
@notice Rounds of decentralised training, coordinated without a trusted
        aggregator. A swarm is a fixed allowlist of members, a model spec
        digest, an aggregation rule and a quorum. Members join (registering
        the URL of their ailedger node). In each round every joined member
        commits the digest of its local update, then, once all joined
        members committed or the commit deadline passed, submits the digest
        of the global model it aggregated deterministically from the
        committed updates. The round is final when `quorum` submissions
        agree on one digest; the next round starts at once. A round without
        a quorum by its submit deadline can be closed by anyone: it fails
        and the next round starts (the global model stays the previous one).
        Members that did not commit, and members that submitted a digest
        other than the final one, are recorded (events and counters).
@dev    Rounds are sequential and numbered from 0; only the current round
        accepts commits and submissions. Because quorum > members / 2, at
        most one digest can reach the quorum in a round. Every loop is over
        the member list (at most MAX_MEMBERS). Deadlines are inclusive:
        commits are accepted while block.timestamp <= commit deadline,
        submissions while block.timestamp <= submit deadline, and close_round
        only when block.timestamp > submit deadline.
        Round status: 0 not started, 1 pending, 2 finalized, 3 failed.
        Rules: 0 fedavg, 1 median, 2 trimmed mean (rule_param = updates
        trimmed at each end), 3 Krum (rule_param = tolerated Byzantine
        updates f).
"""

MAX_MEMBERS: constant(uint256) = 32
MAX_URL: constant(uint256) = 256
# One year: bounds every window so start + windows can never overflow.
MAX_WINDOW: constant(uint256) = 31536000

RULE_FEDAVG: constant(uint8) = 0
RULE_MEDIAN: constant(uint8) = 1
RULE_TRIMMED_MEAN: constant(uint8) = 2
RULE_KRUM: constant(uint8) = 3

PENDING: constant(uint8) = 1
FINALIZED: constant(uint8) = 2
FAILED: constant(uint8) = 3


struct Swarm:
    coordinator: address
    model_spec: bytes32
    rule: uint8
    rule_param: uint256
    quorum: uint256
    commit_window: uint256
    submit_window: uint256
    member_count: uint256
    joined_count: uint256
    started: bool
    current_round: uint256
    global_digest: bytes32
    finalized_rounds: uint256


struct Round:
    start: uint256
    commit_deadline: uint256
    submit_deadline: uint256
    status: uint8
    global_digest: bytes32
    commit_count: uint256
    submit_count: uint256


struct Commitment:
    digest: bytes32
    num_examples: uint256


event SwarmCreated:
    swarm_id: indexed(uint256)
    coordinator: indexed(address)
    model_spec: indexed(bytes32)
    rule: uint8
    rule_param: uint256
    quorum: uint256
    commit_window: uint256
    submit_window: uint256
    members: DynArray[address, MAX_MEMBERS]


event Joined:
    swarm_id: indexed(uint256)
    member: indexed(address)
    node_url: String[MAX_URL]


event NodeUrlUpdated:
    swarm_id: indexed(uint256)
    member: indexed(address)
    node_url: String[MAX_URL]


event RoundStarted:
    swarm_id: indexed(uint256)
    round: indexed(uint256)
    start: uint256
    commit_deadline: uint256
    submit_deadline: uint256


event Committed:
    swarm_id: indexed(uint256)
    round: indexed(uint256)
    member: indexed(address)
    update_digest: bytes32
    num_examples: uint256


event Submitted:
    swarm_id: indexed(uint256)
    round: indexed(uint256)
    member: indexed(address)
    digest: bytes32


event RoundFinalized:
    swarm_id: indexed(uint256)
    round: indexed(uint256)
    digest: bytes32
    supporters: DynArray[address, MAX_MEMBERS]


event RoundFailed:
    swarm_id: indexed(uint256)
    round: indexed(uint256)
    commit_count: uint256
    submit_count: uint256


event MissedCommit:
    swarm_id: indexed(uint256)
    round: indexed(uint256)
    member: indexed(address)


event MinoritySubmission:
    swarm_id: indexed(uint256)
    round: indexed(uint256)
    member: indexed(address)
    digest: bytes32


swarm_count: public(uint256)

_swarms: HashMap[uint256, Swarm]
_members: HashMap[uint256, DynArray[address, MAX_MEMBERS]]
_is_member: HashMap[uint256, HashMap[address, bool]]
_node_urls: HashMap[uint256, HashMap[address, String[MAX_URL]]]
_rounds: HashMap[uint256, HashMap[uint256, Round]]
_commitments: HashMap[uint256, HashMap[uint256, HashMap[address, Commitment]]]
_submissions: HashMap[uint256, HashMap[uint256, HashMap[address, bytes32]]]
_votes: HashMap[uint256, HashMap[uint256, HashMap[bytes32, uint256]]]
_misses: HashMap[uint256, HashMap[address, uint256]]
_minority: HashMap[uint256, HashMap[address, uint256]]


@internal
def _start_round(swarm_id: uint256, round_id: uint256):
    s: Swarm = self._swarms[swarm_id]
    commit_deadline: uint256 = block.timestamp + s.commit_window
    submit_deadline: uint256 = commit_deadline + s.submit_window
    self._rounds[swarm_id][round_id] = Round(
        start=block.timestamp,
        commit_deadline=commit_deadline,
        submit_deadline=submit_deadline,
        status=PENDING,
        global_digest=empty(bytes32),
        commit_count=0,
        submit_count=0,
    )
    self._swarms[swarm_id].current_round = round_id
    log RoundStarted(
        swarm_id=swarm_id,
        round=round_id,
        start=block.timestamp,
        commit_deadline=commit_deadline,
        submit_deadline=submit_deadline,
    )


@internal
def _record_misses(swarm_id: uint256, round_id: uint256):
    # Joined members that did not commit this round missed it.
    for m: address in self._members[swarm_id]:
        if len(self._node_urls[swarm_id][m]) == 0:
            continue
        if self._commitments[swarm_id][round_id][m].digest == empty(bytes32):
            self._misses[swarm_id][m] += 1
            log MissedCommit(swarm_id=swarm_id, round=round_id, member=m)


@internal
@view
def _joined_member(swarm_id: uint256) -> Swarm:
    # The swarm, checked to exist, to list the caller and that it joined.
    s: Swarm = self._swarms[swarm_id]
    assert s.member_count != 0, "SwarmRounds: unknown swarm"
    assert self._is_member[swarm_id][msg.sender], "SwarmRounds: not a member"
    assert len(self._node_urls[swarm_id][msg.sender]) != 0, "SwarmRounds: not joined"
    return s


@internal
@view
def _current(s: Swarm, round_id: uint256):
    assert s.started, "SwarmRounds: swarm not started"
    assert round_id == s.current_round, "SwarmRounds: wrong round"


@external
@nonreentrant
def create_swarm(
    model_spec: bytes32,
    rule: uint8,
    rule_param: uint256,
    members: DynArray[address, MAX_MEMBERS],
    quorum: uint256,
    commit_window: uint256,
    submit_window: uint256,
) -> uint256:
    """
    @notice Create a swarm. The caller is recorded as its coordinator of
            record and has no special power afterwards (it need not be a
            member).
    @param model_spec Digest of the model specification (non-zero).
    @param rule Aggregation rule: 0 fedavg, 1 median, 2 trimmed mean,
           3 Krum.
    @param rule_param 0 for fedavg and median; for trimmed mean the number
           of updates trimmed at each end (2 * rule_param < members); for
           Krum the number f of tolerated Byzantine updates
           (f + 2 < members, so each update has a neighbour to be scored
           against).
    @param members The allowlist: 1 .. 32 distinct non-zero addresses.
    @param quorum Agreeing submissions that finalise a round: more than
           half the members and at most all of them.
    @param commit_window Seconds from a round's start to its commit
           deadline (1 s .. 1 year).
    @param submit_window Seconds from the commit deadline to the submit
           deadline (1 s .. 1 year).
    @return The swarm id (from 1).
    """
    n: uint256 = len(members)
    assert model_spec != empty(bytes32), "SwarmRounds: empty model spec"
    assert rule <= RULE_KRUM, "SwarmRounds: unknown rule"
    assert n > 0, "SwarmRounds: no members"
    if rule == RULE_FEDAVG or rule == RULE_MEDIAN:
        assert rule_param == 0, "SwarmRounds: bad rule parameter"
    elif rule == RULE_TRIMMED_MEAN:
        assert rule_param < MAX_MEMBERS and 2 * rule_param < n, "SwarmRounds: bad rule parameter"
    else:
        # Krum scores each update by its n - f - 2 nearest neighbours: at least one.
        # (Krum's guarantee needs n >= 2f + 3; that is the runner's concern.)
        assert rule_param < MAX_MEMBERS and rule_param + 2 < n, "SwarmRounds: bad rule parameter"
    assert quorum * 2 > n, "SwarmRounds: quorum must exceed half the members"
    assert quorum <= n, "SwarmRounds: quorum exceeds the members"
    assert commit_window > 0, "SwarmRounds: commit_window must be positive"
    assert commit_window <= MAX_WINDOW, "SwarmRounds: commit_window too long"
    assert submit_window > 0, "SwarmRounds: submit_window must be positive"
    assert submit_window <= MAX_WINDOW, "SwarmRounds: submit_window too long"
    swarm_id: uint256 = self.swarm_count + 1
    self.swarm_count = swarm_id
    for m: address in members:
        assert m != empty(address), "SwarmRounds: zero member address"
        assert not self._is_member[swarm_id][m], "SwarmRounds: duplicate member"
        self._is_member[swarm_id][m] = True
    self._members[swarm_id] = members
    self._swarms[swarm_id] = Swarm(
        coordinator=msg.sender,
        model_spec=model_spec,
        rule=rule,
        rule_param=rule_param,
        quorum=quorum,
        commit_window=commit_window,
        submit_window=submit_window,
        member_count=n,
        joined_count=0,
        started=False,
        current_round=0,
        global_digest=empty(bytes32),
        finalized_rounds=0,
    )
    log SwarmCreated(
        swarm_id=swarm_id,
        coordinator=msg.sender,
        model_spec=model_spec,
        rule=rule,
        rule_param=rule_param,
        quorum=quorum,
        commit_window=commit_window,
        submit_window=submit_window,
        members=members,
    )
    return swarm_id


@external
@nonreentrant
def join(swarm_id: uint256, node_url: String[MAX_URL]):
    """
    @notice Join a swarm as an allowlisted member, registering the URL of
            the member's ailedger node (where peers fetch its updates).
            Calling again replaces the URL. Round 0 starts when the last
            member joins; before that, start() can start it once a quorum
            joined. A member may join after the start: it takes part from
            then on (it can commit in the current round if the commit window
            is still open).
    @param swarm_id The swarm.
    @param node_url The node's URL (1 .. 256 bytes).
    """
    s: Swarm = self._swarms[swarm_id]
    assert s.member_count != 0, "SwarmRounds: unknown swarm"
    assert self._is_member[swarm_id][msg.sender], "SwarmRounds: not a member"
    assert len(node_url) > 0, "SwarmRounds: empty node URL"
    if len(self._node_urls[swarm_id][msg.sender]) != 0:
        self._node_urls[swarm_id][msg.sender] = node_url
        log NodeUrlUpdated(swarm_id=swarm_id, member=msg.sender, node_url=node_url)
        return
    self._node_urls[swarm_id][msg.sender] = node_url
    self._swarms[swarm_id].joined_count = s.joined_count + 1
    log Joined(swarm_id=swarm_id, member=msg.sender, node_url=node_url)
    if not s.started and s.joined_count + 1 == s.member_count:
        self._swarms[swarm_id].started = True
        self._start_round(swarm_id, 0)


@external
@nonreentrant
def start(swarm_id: uint256):
    """
    @notice Start round 0 before every member joined. Any joined member,
            once at least `quorum` members joined; members that have not
            joined yet can still join later.
    @param swarm_id The swarm.
    """
    s: Swarm = self._joined_member(swarm_id)
    assert not s.started, "SwarmRounds: already started"
    assert s.joined_count >= s.quorum, "SwarmRounds: fewer members joined than the quorum"
    self._swarms[swarm_id].started = True
    self._start_round(swarm_id, 0)


@external
@nonreentrant
def commit(swarm_id: uint256, round_id: uint256, update_digest: bytes32, num_examples: uint256):
    """
    @notice Commit the digest of this member's local update for the current
            round. Joined members only, once per round, until the commit
            deadline (inclusive).
    @param swarm_id The swarm.
    @param round_id The current round.
    @param update_digest SHA-256 of the serialised update (non-zero).
    @param num_examples Training examples behind the update (positive;
           FedAvg weights by it).
    """
    s: Swarm = self._joined_member(swarm_id)
    self._current(s, round_id)
    r: Round = self._rounds[swarm_id][round_id]
    assert block.timestamp <= r.commit_deadline, "SwarmRounds: commit window closed"
    c: Commitment = self._commitments[swarm_id][round_id][msg.sender]
    assert c.digest == empty(bytes32), "SwarmRounds: already committed"
    assert update_digest != empty(bytes32), "SwarmRounds: empty update digest"
    assert num_examples > 0, "SwarmRounds: num_examples must be positive"
    self._commitments[swarm_id][round_id][msg.sender] = Commitment(
        digest=update_digest, num_examples=num_examples
    )
    self._rounds[swarm_id][round_id].commit_count = r.commit_count + 1
    log Committed(
        swarm_id=swarm_id,
        round=round_id,
        member=msg.sender,
        update_digest=update_digest,
        num_examples=num_examples,
    )


@external
@nonreentrant
def submit_global(swarm_id: uint256, round_id: uint256, digest: bytes32):
    """
    @notice Submit the digest of the global model this member aggregated
            from the round's committed updates. Members that committed this
            round only, once, after every joined member committed or after
            the commit deadline, until the submit deadline (inclusive).
            The submission that brings one digest to the quorum finalises
            the round: the digest becomes the global model, joined members
            that did not commit are recorded (MissedCommit, misses), members
            that submitted another digest are recorded (MinoritySubmission,
            minority), and the next round starts. Members that committed
            but had not submitted yet are not penalised.
    @param swarm_id The swarm.
    @param round_id The current round.
    @param digest SHA-256 of the aggregated global model (non-zero).
    """
    s: Swarm = self._joined_member(swarm_id)
    self._current(s, round_id)
    r: Round = self._rounds[swarm_id][round_id]
    assert (
        self._commitments[swarm_id][round_id][msg.sender].digest != empty(bytes32)
    ), "SwarmRounds: not committed this round"
    assert (
        self._submissions[swarm_id][round_id][msg.sender] == empty(bytes32)
    ), "SwarmRounds: already submitted"
    assert (
        r.commit_count == s.joined_count or block.timestamp > r.commit_deadline
    ), "SwarmRounds: commit window still open"
    assert block.timestamp <= r.submit_deadline, "SwarmRounds: submit window closed"
    assert digest != empty(bytes32), "SwarmRounds: empty global digest"
    self._submissions[swarm_id][round_id][msg.sender] = digest
    self._rounds[swarm_id][round_id].submit_count = r.submit_count + 1
    votes: uint256 = self._votes[swarm_id][round_id][digest] + 1
    self._votes[swarm_id][round_id][digest] = votes
    log Submitted(swarm_id=swarm_id, round=round_id, member=msg.sender, digest=digest)
    if votes < s.quorum:
        return
    supporters: DynArray[address, MAX_MEMBERS] = []
    for m: address in self._members[swarm_id]:
        sub: bytes32 = self._submissions[swarm_id][round_id][m]
        if sub == digest:
            supporters.append(m)
        elif sub != empty(bytes32):
            self._minority[swarm_id][m] += 1
            log MinoritySubmission(swarm_id=swarm_id, round=round_id, member=m, digest=sub)
    self._record_misses(swarm_id, round_id)
    self._rounds[swarm_id][round_id].status = FINALIZED
    self._rounds[swarm_id][round_id].global_digest = digest
    self._swarms[swarm_id].global_digest = digest
    self._swarms[swarm_id].finalized_rounds = s.finalized_rounds + 1
    log RoundFinalized(swarm_id=swarm_id, round=round_id, digest=digest, supporters=supporters)
    self._start_round(swarm_id, round_id + 1)


@external
@nonreentrant
def close_round(swarm_id: uint256, round_id: uint256):
    """
    @notice Fail the current round after its submit deadline passed without
            a quorum. Anyone may call it. Joined members that did not commit
            are recorded (MissedCommit, misses); submissions are not judged
            (there is no agreed digest). The next round starts now and the
            global model stays the previous one.
    @param swarm_id The swarm.
    @param round_id The current round.
    """
    s: Swarm = self._swarms[swarm_id]
    assert s.member_count != 0, "SwarmRounds: unknown swarm"
    assert s.started, "SwarmRounds: swarm not started"
    assert round_id <= s.current_round, "SwarmRounds: wrong round"
    assert round_id == s.current_round, "SwarmRounds: round already settled"
    r: Round = self._rounds[swarm_id][round_id]
    assert block.timestamp > r.submit_deadline, "SwarmRounds: submit window still open"
    self._record_misses(swarm_id, round_id)
    self._rounds[swarm_id][round_id].status = FAILED
    log RoundFailed(
        swarm_id=swarm_id, round=round_id, commit_count=r.commit_count, submit_count=r.submit_count
    )
    self._start_round(swarm_id, round_id + 1)


@external
@view
def swarm_info(swarm_id: uint256) -> Swarm:
    """
    @notice A swarm.
    @param swarm_id The swarm.
    @return (coordinator, model_spec, rule, rule_param, quorum,
            commit_window, submit_window, member_count, joined_count,
            started, current_round, global_digest, finalized_rounds);
            member_count is 0 if there is no such swarm; global_digest is
            the latest finalised global model (zero before the first).
    """
    return self._swarms[swarm_id]


@external
@view
def members(swarm_id: uint256) -> DynArray[address, MAX_MEMBERS]:
    """
    @notice The member allowlist, in creation order.
    @param swarm_id The swarm.
    @return The members (empty if there is no such swarm).
    """
    return self._members[swarm_id]


@external
@view
def node_url(swarm_id: uint256, member: address) -> String[MAX_URL]:
    """
    @notice The node URL a member registered (empty: not joined).
    @param swarm_id The swarm.
    @param member The member.
    @return The URL.
    """
    return self._node_urls[swarm_id][member]


@external
@view
def current_round(swarm_id: uint256) -> uint256:
    """
    @notice The round accepting commits and submissions (0 also before the
            swarm started: check swarm_info().started).
    @param swarm_id The swarm.
    @return The round number.
    """
    return self._swarms[swarm_id].current_round


@external
@view
def round_info(swarm_id: uint256, round_id: uint256) -> Round:
    """
    @notice A round.
    @param swarm_id The swarm.
    @param round_id The round.
    @return (start, commit_deadline, submit_deadline, status, global_digest,
            commit_count, submit_count); status 0 if the round has not
            started, 1 pending, 2 finalized, 3 failed.
    """
    return self._rounds[swarm_id][round_id]


@external
@view
def commitment(swarm_id: uint256, round_id: uint256, member: address) -> (bytes32, uint256):
    """
    @notice A member's commitment in a round.
    @param swarm_id The swarm.
    @param round_id The round.
    @param member The member.
    @return (update_digest, num_examples); zeros if it did not commit.
    """
    c: Commitment = self._commitments[swarm_id][round_id][member]
    return c.digest, c.num_examples


@external
@view
def submission(swarm_id: uint256, round_id: uint256, member: address) -> bytes32:
    """
    @notice The global digest a member submitted in a round (zero: none).
    @param swarm_id The swarm.
    @param round_id The round.
    @param member The member.
    @return The submitted digest.
    """
    return self._submissions[swarm_id][round_id][member]


@external
@view
def votes(swarm_id: uint256, round_id: uint256, digest: bytes32) -> uint256:
    """
    @notice How many members submitted a digest in a round.
    @param swarm_id The swarm.
    @param round_id The round.
    @param digest The global digest.
    @return The number of submissions of that digest.
    """
    return self._votes[swarm_id][round_id][digest]


@external
@view
def misses(swarm_id: uint256, member: address) -> uint256:
    """
    @notice Settled rounds (finalized or failed) in which the member had
            joined but did not commit.
    @param swarm_id The swarm.
    @param member The member.
    @return The count.
    """
    return self._misses[swarm_id][member]


@external
@view
def minority(swarm_id: uint256, member: address) -> uint256:
    """
    @notice Finalized rounds in which the member submitted a digest other
            than the final one (before finalisation).
    @param swarm_id The swarm.
    @param member The member.
    @return The count.
    """
    return self._minority[swarm_id][member]


@external
@view
def is_member(swarm_id: uint256, account: address) -> bool:
    """
    @notice Whether an account is on a swarm's allowlist.
    @param swarm_id The swarm.
    @param account The account.
    @return True if it is a member.
    """
    return self._is_member[swarm_id][account]
