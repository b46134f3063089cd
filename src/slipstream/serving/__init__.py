"""What a request does, step by step; it decides, and ``http`` answers (no response objects here).

- ``chat``         chat completions: scope check → provider → usage meter → client-shaped chunks.
- ``lent_stream``  a stream a local runner writes to the client: its reports, metering and end.
- ``metering``     one call's token counts and timings, written as exactly one usage row.
"""
