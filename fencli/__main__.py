from fencli.cli import run

run()
