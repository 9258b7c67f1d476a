from dcgan_cli.cli import main

main()
