"""`mailspec load`: mail-client flows (mix.py, client.py) driven by Locust
(locustfile.py), started and judged by runner.py; see docs/load.md."""
