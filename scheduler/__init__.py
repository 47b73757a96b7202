"""The drip engine: sequences, enrollment, timing, personalization and sending policy.

Nothing here knows aiohttp, PTB or APScheduler; the outside world comes in through small
protocols that ``bot`` implements.
"""
