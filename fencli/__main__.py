from fencli.cli import main

main()
