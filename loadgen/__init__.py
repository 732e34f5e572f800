"""The client side of concurrency-bench: the load engine, the comparison suite, the client."""
