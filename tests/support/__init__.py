"""What the tests share: a live web process, peers that misbehave, receivers, an SMTP sink, a TCP
proxy that cuts, throwaway TLS certificates."""
