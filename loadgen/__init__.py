"""The client side of concurrency-bench: protocol client, shell, load engine, reports."""
