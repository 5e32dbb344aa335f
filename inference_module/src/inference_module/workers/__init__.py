"""Several processes serving one port (`INFERENCE_WORKERS` > 1), behaving as one module.

The first process (the leader) is the module as with one worker: it holds the edgeHub connection, runs
every swap and accepts every connection. It starts the followers, hands each accepted connection to the
next worker in turn (itself included), and prepares every swap in all workers before any switches, so
a swap is never half-applied. A follower serves the connections it is handed and asks the leader for
everything else (a reload, a model that keeps failing).
"""
