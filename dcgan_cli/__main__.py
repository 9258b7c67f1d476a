from dcgan_cli.cli import app

app(prog_name="dcgan")
