"""The usage ledger: one row per request, priced exactly, written in batches, reported by key/model/day.

- ``records``   one usage row.
- ``pricing``   token counts × prices → integer pico-dollars.
- ``recorder``  group commits: a response ends only once its row is committed.
- ``reports``   totals by key, model or day.
"""
