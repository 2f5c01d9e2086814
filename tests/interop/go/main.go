// Command ailedger-interop checks ailedger's signed notes, C2SP checkpoints,
// tlog-proof@v1 receipts and RFC 9162 proofs with Go's reference
// implementations: golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog.
//
// Only the C2SP text framing (checkpoint body, tlog-proof@v1 receipt) is parsed
// here, by the letter of https://c2sp.org/tlog-checkpoint and
// https://c2sp.org/tlog-proof; every signature and every hash check is done by
// x/mod. It is built offline in GOPATH mode against Debian's
// golang-golang-x-mod-dev (see scripts/install_go.sh and test_go_interop.py).
//
// Subcommands (exit 0 = accepted, 1 = rejected with the reason on stderr,
// 2 = usage error):
//
//	note-verify <vkey> <signed-note-file>          prints the note text
//	checkpoint  <vkey> <signed-checkpoint-file>    prints "origin size roothex"
//	receipt     <vkey> <receipt-file> <entry-file> prints "origin size roothex index"
//	inclusion   <entry-file> <index> <size> <root> [proof hashes...]
//	consistency <size1> <size2> <root1> <root2> [proof hashes...]
//	keygen      <name>                             prints skey, then vkey
//	sign        <skey> <text-file>                 prints the signed note
//	vkey        <name> <ed25519-public-key>        prints note.NewEd25519VerifierKey
//	batch       <cases.json>                       runs many cases, prints JSON results
//
// Hashes and keys are given in hex (64 chars) or standard base64.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ---- C2SP framing ----------------------------------------------------------

// Checkpoint is a parsed C2SP tlog-checkpoint body.
type Checkpoint struct {
	Origin     string   `json:"origin"`
	Size       int64    `json:"size"`
	Root       []byte   `json:"root"`
	Extensions []string `json:"extensions"`
}

// parseCheckpoint parses the note text of a C2SP tlog-checkpoint:
// origin line, decimal size line (no sign, no leading zeros), base64 root
// hash line, then zero or more non-empty extension lines; every line ends in \n.
func parseCheckpoint(text string) (*Checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("checkpoint: text does not end in a newline")
	}
	lines := strings.Split(text[:len(text)-1], "\n")
	if len(lines) < 3 {
		return nil, errors.New("checkpoint: want origin, size and root lines")
	}
	origin, sizeStr, rootStr := lines[0], lines[1], lines[2]
	if origin == "" {
		return nil, errors.New("checkpoint: empty origin")
	}
	if sizeStr == "" || (len(sizeStr) > 1 && sizeStr[0] == '0') || strings.TrimLeft(sizeStr, "0123456789") != "" {
		return nil, fmt.Errorf("checkpoint: malformed size %q", sizeStr)
	}
	size, err := strconv.ParseInt(sizeStr, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: size %q: %v", sizeStr, err)
	}
	root, err := tlog.ParseHash(rootStr)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: root %q: %v", rootStr, err)
	}
	if base64.StdEncoding.EncodeToString(root[:]) != rootStr {
		return nil, fmt.Errorf("checkpoint: root %q is not canonical base64", rootStr)
	}
	ext := lines[3:]
	for _, e := range ext {
		if e == "" {
			return nil, errors.New("checkpoint: empty extension line")
		}
	}
	return &Checkpoint{Origin: origin, Size: size, Root: root[:], Extensions: ext}, nil
}

// openNote verifies a signed note with note.Open and one verifier key.
func openNote(vkey string, msg []byte) (*note.Note, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("note.NewVerifier: %v", err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("note.Open: %v", err)
	}
	return n, nil
}

// openCheckpoint verifies and parses a signed checkpoint; the origin must be the key name.
func openCheckpoint(vkey string, msg []byte) (*Checkpoint, error) {
	n, err := openNote(vkey, msg)
	if err != nil {
		return nil, err
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		return nil, err
	}
	v, _ := note.NewVerifier(vkey)
	if cp.Origin != v.Name() {
		return nil, fmt.Errorf("checkpoint: origin %q is not the key name %q", cp.Origin, v.Name())
	}
	return cp, nil
}

// Receipt is a parsed C2SP tlog-proof@v1.
type Receipt struct {
	Extra      []byte
	Index      int64
	Proof      tlog.RecordProof
	Checkpoint []byte
}

const receiptHeader = "c2sp.org/tlog-proof@v1"

func parseReceipt(b []byte) (*Receipt, error) {
	i := bytes.Index(b, []byte("\n\n"))
	if i < 0 {
		return nil, errors.New("receipt: no blank line before the checkpoint")
	}
	head, cp := string(b[:i]), b[i+2:]
	if len(cp) == 0 {
		return nil, errors.New("receipt: empty checkpoint")
	}
	lines := strings.Split(head, "\n")
	if lines[0] != receiptHeader {
		return nil, fmt.Errorf("receipt: first line %q is not %q", lines[0], receiptHeader)
	}
	lines = lines[1:]
	r := &Receipt{Checkpoint: cp}
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		x, err := base64.StdEncoding.DecodeString(lines[0][len("extra "):])
		if err != nil {
			return nil, fmt.Errorf("receipt: extra: %v", err)
		}
		r.Extra = x
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		return nil, errors.New("receipt: missing index line")
	}
	idx := lines[0][len("index "):]
	if idx == "" || (len(idx) > 1 && idx[0] == '0') || strings.TrimLeft(idx, "0123456789") != "" {
		return nil, fmt.Errorf("receipt: malformed index %q", idx)
	}
	n, err := strconv.ParseInt(idx, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("receipt: index: %v", err)
	}
	r.Index = n
	for _, l := range lines[1:] {
		h, err := tlog.ParseHash(l)
		if err != nil {
			return nil, fmt.Errorf("receipt: proof hash %q: %v", l, err)
		}
		r.Proof = append(r.Proof, h)
	}
	if len(r.Proof) > 63 {
		return nil, errors.New("receipt: proof longer than 63 hashes")
	}
	return r, nil
}

// verifyReceipt: checkpoint signature (note.Open), then tlog.CheckRecord.
func verifyReceipt(vkey string, receipt, entry []byte) (*Checkpoint, int64, error) {
	r, err := parseReceipt(receipt)
	if err != nil {
		return nil, 0, err
	}
	cp, err := openCheckpoint(vkey, r.Checkpoint)
	if err != nil {
		return nil, 0, err
	}
	if err := checkRecord(entry, r.Index, cp.Size, cp.Root, r.Proof); err != nil {
		return nil, 0, err
	}
	return cp, r.Index, nil
}

// ---- proofs (all hashing and checking by x/mod/sumdb/tlog) -----------------

func toHash(b []byte, what string) (tlog.Hash, error) {
	var h tlog.Hash
	if len(b) != tlog.HashSize {
		return h, fmt.Errorf("%s is %d bytes, not %d", what, len(b), tlog.HashSize)
	}
	copy(h[:], b)
	return h, nil
}

func toHashes(bs [][]byte) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, 0, len(bs))
	for i, b := range bs {
		h, err := toHash(b, fmt.Sprintf("proof hash %d", i))
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// checkRecord: the entry at index is in the tree (size, root). Note the argument
// order of tlog.CheckRecord(p, t=tree size, th=tree hash, n=record index, h=record hash).
func checkRecord(entry []byte, index, size int64, root []byte, proof tlog.RecordProof) error {
	th, err := toHash(root, "root")
	if err != nil {
		return err
	}
	if err := tlog.CheckRecord(proof, size, th, index, tlog.RecordHash(entry)); err != nil {
		return fmt.Errorf("tlog.CheckRecord: %v", err)
	}
	return nil
}

// checkTree: tree (size2, root2) extends tree (size1, root1). Argument order of
// tlog.CheckTree(p, t=new size, th=new hash, n=old size, h=old hash).
func checkTree(size1, size2 int64, root1, root2 []byte, proof tlog.TreeProof) error {
	h1, err := toHash(root1, "root1")
	if err != nil {
		return err
	}
	h2, err := toHash(root2, "root2")
	if err != nil {
		return err
	}
	if err := tlog.CheckTree(proof, size2, h2, size1, h1); err != nil {
		return fmt.Errorf("tlog.CheckTree: %v", err)
	}
	return nil
}

// ---- keys and signing ------------------------------------------------------

func signNote(skey string, text []byte) ([]byte, error) {
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("note.NewSigner: %v", err)
	}
	msg, err := note.Sign(&note.Note{Text: string(text)}, s)
	if err != nil {
		return nil, fmt.Errorf("note.Sign: %v", err)
	}
	return msg, nil
}

// ---- batch mode --------------------------------------------------------------

// Case is one check in a batch file; []byte fields are standard base64 in JSON,
// so notes and entries travel byte-exact (even when not valid UTF-8).
type Case struct {
	Op      string   `json:"op"`
	VKey    string   `json:"vkey"`
	SKey    string   `json:"skey"`
	Name    string   `json:"name"`
	Pub     []byte   `json:"pub"`
	Note    []byte   `json:"note"`
	Text    []byte   `json:"text"`
	Receipt []byte   `json:"receipt"`
	Entry   []byte   `json:"entry"`
	Leaf    []byte   `json:"leaf_hash"` // inclusion: an already leaf-hashed entry, if set
	Index   int64    `json:"index"`
	Size    int64    `json:"size"`
	Size1   int64    `json:"size1"`
	Size2   int64    `json:"size2"`
	Root    []byte   `json:"root"`
	Root1   []byte   `json:"root1"`
	Root2   []byte   `json:"root2"`
	Proof   [][]byte `json:"proof"`
}

// Result of one case: OK, or Err with the reason.
type Result struct {
	OK         bool        `json:"ok"`
	Err        string      `json:"err,omitempty"`
	Text       []byte      `json:"text,omitempty"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	Index      int64       `json:"index,omitempty"`
	KeyName    string      `json:"key_name,omitempty"`
	KeyHash    string      `json:"key_hash,omitempty"`
	Signers    []string    `json:"signers,omitempty"`
	Unverified []string    `json:"unverified,omitempty"`
	SKey       string      `json:"skey,omitempty"`
	VKey       string      `json:"vkey,omitempty"`
	Note       []byte      `json:"note,omitempty"`
	LeafHash   []byte      `json:"leaf_hash,omitempty"`
	NodeHash   []byte      `json:"node_hash,omitempty"`
}

func runCase(c *Case) (res Result) {
	defer func() { // a panic in x/mod would be a finding too: report, don't die
		if p := recover(); p != nil {
			res = Result{Err: fmt.Sprintf("panic: %v", p)}
		}
	}()
	fail := func(err error) Result { return Result{Err: err.Error()} }
	switch c.Op {
	case "note-verify":
		n, err := openNote(c.VKey, c.Note)
		if err != nil {
			return fail(err)
		}
		r := Result{OK: true, Text: []byte(n.Text)}
		for _, s := range n.Sigs {
			r.Signers = append(r.Signers, s.Name)
		}
		for _, s := range n.UnverifiedSigs {
			r.Unverified = append(r.Unverified, s.Name)
		}
		return r
	case "checkpoint":
		cp, err := openCheckpoint(c.VKey, c.Note)
		if err != nil {
			return fail(err)
		}
		return Result{OK: true, Checkpoint: cp}
	case "receipt":
		cp, idx, err := verifyReceipt(c.VKey, c.Receipt, c.Entry)
		if err != nil {
			return fail(err)
		}
		return Result{OK: true, Checkpoint: cp, Index: idx}
	case "inclusion":
		p, err := toHashes(c.Proof)
		if err != nil {
			return fail(err)
		}
		if c.Leaf != nil {
			lh, err := toHash(c.Leaf, "leaf hash")
			if err != nil {
				return fail(err)
			}
			th, err := toHash(c.Root, "root")
			if err != nil {
				return fail(err)
			}
			if err := tlog.CheckRecord(p, c.Size, th, c.Index, lh); err != nil {
				return fail(fmt.Errorf("tlog.CheckRecord: %v", err))
			}
			return Result{OK: true}
		}
		if err := checkRecord(c.Entry, c.Index, c.Size, c.Root, p); err != nil {
			return fail(err)
		}
		return Result{OK: true}
	case "consistency":
		p, err := toHashes(c.Proof)
		if err != nil {
			return fail(err)
		}
		if err := checkTree(c.Size1, c.Size2, c.Root1, c.Root2, p); err != nil {
			return fail(err)
		}
		return Result{OK: true}
	case "parse-vkey":
		v, err := note.NewVerifier(c.VKey)
		if err != nil {
			return fail(err)
		}
		return Result{OK: true, KeyName: v.Name(), KeyHash: fmt.Sprintf("%08x", v.KeyHash())}
	case "vkey":
		vk, err := note.NewEd25519VerifierKey(c.Name, ed25519.PublicKey(c.Pub))
		if err != nil {
			return fail(err)
		}
		return Result{OK: true, VKey: vk}
	case "keygen":
		sk, vk, err := note.GenerateKey(rand.Reader, c.Name)
		if err != nil {
			return fail(err)
		}
		return Result{OK: true, SKey: sk, VKey: vk}
	case "sign":
		msg, err := signNote(c.SKey, c.Text)
		if err != nil {
			return fail(err)
		}
		return Result{OK: true, Note: msg}
	case "hash":
		// RFC 6962 hashes as computed by tlog, for the hashing cross-check.
		r := Result{OK: true, LeafHash: hb(tlog.RecordHash(c.Entry))}
		if len(c.Proof) == 2 {
			l, err1 := toHash(c.Proof[0], "left")
			rr, err2 := toHash(c.Proof[1], "right")
			if err1 != nil || err2 != nil {
				return fail(errors.New("hash: want two 32-byte hashes"))
			}
			r.NodeHash = hb(tlog.NodeHash(l, rr))
		}
		return r
	}
	return fail(fmt.Errorf("unknown op %q", c.Op))
}

func hb(h tlog.Hash) []byte { return append([]byte(nil), h[:]...) }

// ---- CLI ---------------------------------------------------------------------

func usage() {
	fmt.Fprintln(os.Stderr, `usage: ailedger-interop <command> [args]
  note-verify <vkey> <signed-note-file>
  checkpoint  <vkey> <signed-checkpoint-file>
  receipt     <vkey> <receipt-file> <entry-file>
  inclusion   <entry-file> <index> <size> <root> [proof hashes...]
  consistency <size1> <size2> <root1> <root2> [proof hashes...]
  keygen      <name>
  sign        <skey> <text-file>
  vkey        <name> <ed25519-public-key>
  batch       <cases.json | ->`)
	os.Exit(2)
}

func die(err error) {
	fmt.Fprintln(os.Stderr, "rejected:", err)
	os.Exit(1)
}

func readFile(name string) []byte {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return b
}

// decodeBytes accepts hex (even length, all hex digits) or standard base64.
func decodeBytes(s string) []byte {
	if len(s)%2 == 0 {
		if b, err := hex.DecodeString(s); err == nil {
			return b
		}
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%q is neither hex nor base64\n", s)
		os.Exit(2)
	}
	return b
}

func atoi(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad number %q\n", s)
		os.Exit(2)
	}
	return n
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	args := os.Args[2:]
	need := func(n int, exact bool) {
		if len(args) < n || (exact && len(args) != n) {
			usage()
		}
	}
	switch os.Args[1] {
	case "note-verify":
		need(2, true)
		n, err := openNote(args[0], readFile(args[1]))
		if err != nil {
			die(err)
		}
		fmt.Print(n.Text)
	case "checkpoint":
		need(2, true)
		cp, err := openCheckpoint(args[0], readFile(args[1]))
		if err != nil {
			die(err)
		}
		fmt.Printf("%s %d %x\n", cp.Origin, cp.Size, cp.Root)
	case "receipt":
		need(3, true)
		cp, idx, err := verifyReceipt(args[0], readFile(args[1]), readFile(args[2]))
		if err != nil {
			die(err)
		}
		fmt.Printf("%s %d %x %d\n", cp.Origin, cp.Size, cp.Root, idx)
	case "inclusion":
		need(4, false)
		var p tlog.RecordProof
		for _, s := range args[4:] {
			h, err := toHash(decodeBytes(s), "proof hash")
			if err != nil {
				die(err)
			}
			p = append(p, h)
		}
		if err := checkRecord(readFile(args[0]), atoi(args[1]), atoi(args[2]), decodeBytes(args[3]), p); err != nil {
			die(err)
		}
		fmt.Println("ok")
	case "consistency":
		need(4, false)
		var p tlog.TreeProof
		for _, s := range args[4:] {
			h, err := toHash(decodeBytes(s), "proof hash")
			if err != nil {
				die(err)
			}
			p = append(p, h)
		}
		if err := checkTree(atoi(args[0]), atoi(args[1]), decodeBytes(args[2]), decodeBytes(args[3]), p); err != nil {
			die(err)
		}
		fmt.Println("ok")
	case "keygen":
		need(1, true)
		sk, vk, err := note.GenerateKey(rand.Reader, args[0])
		if err != nil {
			die(err)
		}
		fmt.Println(sk)
		fmt.Println(vk)
	case "sign":
		need(2, true)
		msg, err := signNote(args[0], readFile(args[1]))
		if err != nil {
			die(err)
		}
		os.Stdout.Write(msg)
	case "vkey":
		need(2, true)
		vk, err := note.NewEd25519VerifierKey(args[0], ed25519.PublicKey(decodeBytes(args[1])))
		if err != nil {
			die(err)
		}
		fmt.Println(vk)
	case "batch":
		need(1, true)
		var cases []Case
		if err := json.Unmarshal(readFile(args[0]), &cases); err != nil {
			fmt.Fprintln(os.Stderr, "batch:", err)
			os.Exit(2)
		}
		results := make([]Result, len(cases))
		for i := range cases {
			results[i] = runCase(&cases[i])
		}
		enc := json.NewEncoder(os.Stdout)
		if err := enc.Encode(results); err != nil {
			fmt.Fprintln(os.Stderr, "batch:", err)
			os.Exit(2)
		}
	default:
		usage()
	}
}
