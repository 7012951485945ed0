from leadscore.cli import app

app()
