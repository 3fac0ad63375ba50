from stepwatch.cli import app

app()
