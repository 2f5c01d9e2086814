from ailedger._cli.app import main

main()
