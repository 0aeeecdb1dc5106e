"""The asyncio shell: WebSocket connections, the writer, live fan-out and NIP-11."""
