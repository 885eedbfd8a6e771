from ffctl.cli import main

main()
