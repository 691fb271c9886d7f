from rluf.cli import main

main()
