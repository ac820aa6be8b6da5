from scaler import cli

cli.main()
