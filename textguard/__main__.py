from textguard.cli import main

main()
