"""CPU-bound media work: probing uploads, splat files (PLY/SPZ), previews and transcodes.

Each submodule imports PyAV/NumPy/Pillow itself, so `import bot.media` stays cheap for the CLI;
every heavy function has an `_async` twin that runs it in a thread, off the event loop.
"""
