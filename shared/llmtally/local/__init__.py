"""The local stack: the whole system on one machine, on an in-process AWS emulator (moto server).

The same handlers as on AWS, driven by runners that give them Lambda's event-source semantics.
"""
