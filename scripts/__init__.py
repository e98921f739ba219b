"""Project scripts: bento build, container image build/run checks (``python -m scripts.<name>``)."""
