from leadscore.cli import main

main()
