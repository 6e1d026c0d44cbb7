from empose_framework.cli import main

main()
