"""The Slack channel: Bolt app, Block Kit messages, commands, approvals and alert threads.

Read in this order: `client.py` (the Web API client), `refs.py` (where a run's messages
are), `blocks.py` (what they look like), `threads.py` (the listener that posts them as a
run moves) with `escalation.py` (whom a run that needs someone pages), `interactions.py`
and `commands.py` (what people do) with `listing.py` (`/incident list`), `payloads.py`
(what a request must hold), `deliveries.py` (each delivery acts once), `app.py` (the
wiring).
"""
