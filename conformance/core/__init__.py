"""The protocol-neutral core: scenario language (scenario, expressions,
patterns), run configuration and expectations, the bounded driver and its
transcript, TLS, the engine and its verdicts. Nothing here imports a
protocol package (conformance.pop3, conformance.smtp)."""
