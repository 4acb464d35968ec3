"""What the tests share, one concept per module.

``live_server``: a real ``vstudio serve`` subprocess and the factory that starts them;
``websocket``: reading its WebSocket frames as a client; ``loopback``: free ports and
``serve_app`` for local servers; ``redis``: a Redis of a test's own; ``studio``: a server
context on a live session, without HTTP; ``platforms``: local servers that speak Twitch,
YouTube, Discord and TikTok; ``types``: the fixture factories' call signatures.
"""
