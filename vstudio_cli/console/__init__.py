"""``vstudio console``: the producer's terminal dashboard for one live session.

``model`` (view state) and ``reducer`` (frames -> state) are pure; ``link`` talks to the
server; ``app`` and ``widgets`` draw the state and turn key presses into requests.
"""
