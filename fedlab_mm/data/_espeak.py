"""Minimal ctypes binding to eSpeak NG, importable without torch.

Kept free of package imports so it can also run as a script: eSpeak NG carries hidden
state from one utterance to the next (the same word can come out a few samples longer
after other words were spoken), so :func:`fedlab_mm.data.speech.render_clips` runs this file
in a fresh process, where the same list of requests always yields the same waveforms.

Script use: ``python _espeak.py OUT.npz`` with a JSON list of
``[word, voice, rate, pitch]`` on standard input.
"""

from __future__ import annotations

import ctypes
import json
import sys
import threading

import numpy as np

INSTALL_HINT = (
    "spoken digits need eSpeak NG, which ships in the optional 'audio' extra: run\n"
    "    pip install -c constraints.txt -e '.[audio]'\n"
    "(make lab / make test install it), or ask for modalities=('image', 'text')."
)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE, _ESPEAK_PITCH = 1, 3


def require_espeak():
    """Import ``espeakng_loader`` or raise an ImportError that names the install command."""
    try:
        import espeakng_loader
    except ImportError as err:  # the optional extra is missing
        raise ImportError(INSTALL_HINT) from err
    return espeakng_loader


def _libc():
    return ctypes.CDLL(None)


class Engine:
    """The eSpeak NG library of this process, initialised once, in synchronous mode."""

    _lib = None
    _sample_rate = 0
    _lock = threading.Lock()
    _chunks: list = []
    _callback = None  # keeps the ctypes callback alive as long as the library

    def __init__(self) -> None:
        with Engine._lock:
            if Engine._lib is None:
                loader = require_espeak()
                lib = ctypes.CDLL(loader.get_library_path())
                lib.espeak_Initialize.restype = ctypes.c_int
                rate = lib.espeak_Initialize(
                    _AUDIO_OUTPUT_SYNCHRONOUS, 0, loader.get_data_path().encode(), 0
                )
                if rate <= 0:
                    raise RuntimeError(f"eSpeak NG failed to initialise (returned {rate})")
                proto = ctypes.CFUNCTYPE(
                    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
                )

                def collect(wav, n, _events):
                    if n > 0:
                        Engine._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
                    return 0

                Engine._callback = proto(collect)
                lib.espeak_SetSynthCallback(Engine._callback)
                Engine._lib, Engine._sample_rate = lib, rate

    @property
    def sample_rate(self) -> int:
        return Engine._sample_rate

    def say(self, text: str, voice: str, rate: int, pitch: int, seed: int = 0) -> np.ndarray:
        """Synthesise ``text``; return int16 samples."""
        lib = Engine._lib
        with Engine._lock:
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"voice={voice!r} is not an eSpeak NG voice")
            lib.espeak_SetParameter(_ESPEAK_RATE, int(rate), 0)
            lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
            # Voicing noise draws from eSpeak's own generator (seeded from the clock at
            # start-up) and from the C library's rand(): seed both for every utterance.
            lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
            _libc().srand(ctypes.c_uint(seed))
            Engine._chunks.clear()
            data = text.encode()
            lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None)
            pieces, Engine._chunks = Engine._chunks, []
        if not pieces:
            raise RuntimeError(f"eSpeak NG produced no audio for {text!r}")
        return np.concatenate(pieces)


def _main(out_path: str) -> None:
    requests = json.load(sys.stdin)
    engine = Engine()
    waves = [
        engine.say(word, voice, rate, pitch, seed=i)
        for i, (word, voice, rate, pitch) in enumerate(requests)
    ]
    lengths = np.array([len(w) for w in waves], dtype=np.int64)
    flat = np.concatenate(waves) if waves else np.zeros(0, np.int16)
    np.savez(out_path, flat=flat, lengths=lengths, sample_rate=engine.sample_rate)


if __name__ == "__main__":
    _main(sys.argv[1])
