"""The realtime server: WebSocket, SSE, REST and the web page."""
