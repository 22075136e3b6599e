"""The relay (SFU): aiortc in worker processes, driven by the trio server over a channel.

Only this package knows asyncio and aiortc. ``bridge`` is the trio side; ``worker`` is the
asyncio process; ``channel`` is the message format both speak.
"""
