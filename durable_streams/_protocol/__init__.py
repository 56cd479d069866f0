"""Pure protocol code: no I/O, no event loop, no aiohttp.

Bytes and header mappings go in; values, events and errors come out. Everything here is
tested without a server.
"""
