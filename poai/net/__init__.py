"""The peer-to-peer layer: framed msgpack messages over asyncio TCP."""
