from agentkube.cli.main import run

run()
