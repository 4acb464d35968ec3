"""The token gate: whether a wallet holds a session's ``requiredTokens``, read on-chain.

``abi`` is the protocol (calldata, answers, the comparison with ``minBalance``), no I/O;
``rpc`` the JSON-RPC client with its bounded timeout; ``gate`` the cached, single-flight check
the ticket endpoint asks.
"""
