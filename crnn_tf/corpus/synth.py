"""Speech synthesisers with phone timings: espeak-ng (libespeak-ng through ctypes), flite (subprocess, -psdur) and
festival (subprocess, a Scheme script that saves the segment relation).

espeak-ng also speaks the English words with the voices of other languages (`FOREIGN_LANGUAGES`): the words'
lexicon pronunciations are given as phonemes, each English phoneme the language lacks replaced by its nearest
substitute that the language has (`foreign_phonemes`; Greek says /i/ for /ɪ/ and /a/ for /ʌ/), and the language's
own rendering of the phonemes and its rules for them in context make the accent.

espeak-ng: ``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ..., espeakINITIALIZE_PHONEME_EVENTS)`` makes the synth
callback receive one PHONEME event per phoneme with the output sample where it starts, plus WORD events. flite:
``-psdur`` prints ``phone:end_time`` for every segment. festival: ``utt.save.segs`` writes each segment's end time
and phone. All return float32 audio at the synthesiser's native rate
and segments in seconds, phones mapped to the corpus ARPAbet set (see `crnn_tf.corpus.lexicon`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import os
import pickle
import shutil
import subprocess
import tempfile
import wave

import numpy as np

from crnn_tf.corpus.lexicon import VOWELS, Segment, espeak_to_arpabet, espeak_word_phonemes, flite_to_arpabet

ESPEAK_LIBRARY = "libespeak-ng.so.1"
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
# Festival voices and the Debian package of each. The two diphone voices are concatenations of a real speaker's
# recorded diphones; slt is an HMM voice trained on a real speaker's recordings.
FESTIVAL_VOICES = {"kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k",
                   "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}
SYNTHESIZERS = ("espeak", "flite", "festival", "espeak_foreign")
DEFAULT_SYNTHESIZERS = ("espeak", "flite")
# espeak-ng languages whose voices speak the English words with their own phonemes (foreign-accented English); each
# has a substitute for every English phoneme of both tasks' lexicons.
FOREIGN_LANGUAGES = ("cs", "de", "el", "es", "fi", "fr", "hi", "hu", "nl", "pl", "pt", "ro", "sv", "tr")
# English espeak-ng mnemonic -> what a language without it says instead, nearest first.
PHONEME_SUBSTITUTES = {
    "I": ("i",), "V": ("a", "@"), "@": ("e", "a"), "oU": ("o", "o:", "u"), "u:": ("u",), "T": ("t", "s"),
    "D": ("d", "z"), "i:": ("i",), "O:": ("o:", "O", "o"), "aI": ("ai", "a"), "E": ("e",), "eI": ("ei", "e"),
    "r": ("R",), "z": ("s",), "w": ("v", "u"), "v": ("w", "f"), "aU": ("au", "a"), "A:": ("a:", "a"),
    "a": ("E", "e"), "3:": ("@", "e"), "j": ("i",), "h": ("x",), "N": ("n",), "S": ("s",), "Z": ("z", "S"),
    "tS": ("S", "s"), "dZ": ("Z", "z"), "U": ("u",), "OI": ("oi", "o"),
}


class MissingToolError(RuntimeError):
    """A Debian tool the corpus needs is not installed."""


def check_tools(synthesizers=SYNTHESIZERS) -> None:
    """Raises MissingToolError naming the Debian package to install when a synthesiser or voice is missing.

    Args:
      synthesizers: which of "espeak", "flite", "festival", "espeak_foreign" are needed (default all).

    Example:
      >>> check_tools(["flite"])  # silent when /usr/bin/flite exists
    """
    if "flite" in synthesizers and shutil.which("flite") is None:
        raise MissingToolError("flite was not found on PATH; install the Debian package: apt-get install flite")
    if "espeak_foreign" in synthesizers and shutil.which("espeak-ng") is None:  # it reads phoneme inventories
        raise MissingToolError("espeak-ng was not found on PATH; install the Debian package: apt-get install "
                               "espeak-ng")
    if "espeak" in synthesizers or "espeak_foreign" in synthesizers:
        try:
            ctypes.CDLL(os.environ.get("CRNN_ESPEAK_LIBRARY", ESPEAK_LIBRARY))
        except OSError as e:
            raise MissingToolError(
                f"cannot load {os.environ.get('CRNN_ESPEAK_LIBRARY', ESPEAK_LIBRARY)} ({e}); install the Debian "
                "package: apt-get install espeak-ng (it brings libespeak-ng1)") from e
    if "festival" in synthesizers:
        packages = " ".join(["festival", *FESTIVAL_VOICES.values()])
        if shutil.which("festival") is None:
            raise MissingToolError(f"festival was not found on PATH; install the Debian packages: apt-get install "
                                   f"{packages}")
        proc = subprocess.run(["festival", "--batch", "(print (voice.list))"], capture_output=True, text=True)
        missing = sorted(set(FESTIVAL_VOICES) - set(proc.stdout.strip("()\n ").split()))
        if missing:
            raise MissingToolError(f"festival lacks the voices {missing}; install the Debian packages: apt-get "
                                   f"install {' '.join(FESTIVAL_VOICES[v] for v in missing)}")


@functools.lru_cache(maxsize=None)
def _espeak_has(language: str, mnemonic: str, vowel: bool) -> bool:
    """Whether espeak-ng's `language` has the phoneme `mnemonic`: it reads it back unchanged (stress marks aside)
    between two m (a vowel) or before an a (a consonant), where no final devoicing or lenition changes it; an
    unknown one is dropped or parsed as others."""
    frame = "m{}m" if vowel else "{}a"
    proc = subprocess.run(["espeak-ng", "-q", "-x", "-v", language, f"[[{frame.format(mnemonic)}]]"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ValueError(f"espeak-ng has no language {language!r}: {proc.stderr.strip()}")
    return proc.stdout.replace("'", "").replace(",", "").strip() == frame.format(mnemonic)


def _foreign_word(language: str, pronunciation: str) -> str:
    word = []
    for phone, mnemonic in zip(pronunciation.split(), espeak_word_phonemes(pronunciation)):
        stress, english = ("'", mnemonic[1:]) if mnemonic.startswith("'") else ("", mnemonic)
        candidates = (english,) + PHONEME_SUBSTITUTES.get(english, ())
        said = next((c for c in candidates if _espeak_has(language, c, phone in VOWELS)), None)
        if said is None:
            raise ValueError(f"espeak-ng {language} has none of {list(candidates)} for the English phoneme "
                             f"{english!r} of {pronunciation!r}")
        word.append(stress + said)
    return "".join(word)  # the language's own rules may still change them in context (German r after a vowel)


def foreign_phonemes(language: str, pronunciations) -> str:
    """The words (ARPAbet lexicon pronunciations) as espeak-ng phoneme input for a `language` voice: every English
    phoneme it lacks replaced by its first substitute in `PHONEME_SUBSTITUTES` that it has.

    Example:
      >>> foreign_phonemes("el", ["S IH K S", "W AH N"])  # Greek has no /ɪ/ nor /ʌ/
      "s'iks w'an"

    Raises:
      ValueError: the language lacks a phoneme and all its substitutes.
    """
    return " ".join(_foreign_word(language, pron) for pron in pronunciations)


@dataclasses.dataclass
class Synthesis:
    """Synthesised audio (float32 in [-1, 1], native rate) and its phone segments (ARPAbet, seconds)."""

    audio: np.ndarray
    sample_rate: int
    segments: list[Segment]


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    # espeak_EVENT from speak_lib.h.
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_EVENT_WORD, _EVENT_PHONEME = 1, 7
_AUDIO_OUTPUT_SYNCHRONOUS, _INITIALIZE_PHONEME_EVENTS = 2, 1
_PHONEMES = 0x100  # espeak_Synth flag espeakPHONEMES: [[...]] is phoneme input
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4


class Espeak:
    """In-process espeak-ng with phoneme events (one instance per process: libespeak-ng has global state).

    Example:
      >>> s = Espeak().synthesize("ONE TWO", voice="en-us+klatt3", rate=170, pitch=50, pitch_range=50)
      >>> s.sample_rate, [seg.phone for seg in s.segments][:3]
      (22050, ['W', 'AH', 'N'])
    """

    def __init__(self):
        check_tools(["espeak"])
        self._lib = ctypes.CDLL(os.environ.get("CRNN_ESPEAK_LIBRARY", ESPEAK_LIBRARY))
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise MissingToolError("espeak_Initialize failed: is espeak-ng-data installed (apt-get install espeak-ng)?")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, str]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: the C side holds only the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, num_samples, events):
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        k = 0
        while events[k].type != 0:
            e = events[k]
            if e.type == _EVENT_PHONEME:
                self._events.append((_EVENT_PHONEME, e.sample, e.id.string.decode("utf-8", "replace")))
            elif e.type == _EVENT_WORD:
                self._events.append((_EVENT_WORD, e.sample, ""))
            k += 1
        return 0

    def synthesize_isolated(self, text: str, **kwargs) -> Synthesis:
        """`synthesize` in a forked child, so every utterance starts from this process's pristine synthesiser state.

        libespeak-ng carries state from one utterance to the next (libc rand() for the Klatt noise source and its
        filter memories), so in-process output would depend on which utterances a worker happened to speak before;
        forking (about a millisecond) makes each utterance a function of its own parameters only.
        """
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: synthesise, send, exit without running the parent's cleanup handlers
            status = 0
            try:
                payload = pickle.dumps(self.synthesize(text, **kwargs))
            except BaseException as e:  # noqa: BLE001  reported to the parent
                payload, status = pickle.dumps(e), 1
            with os.fdopen(write_fd, "wb") as f:
                f.write(payload)
            os._exit(status)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            payload = f.read()
        _, status = os.waitpid(pid, 0)
        result = pickle.loads(payload) if payload else RuntimeError(f"espeak-ng child died (status {status})")
        if isinstance(result, BaseException):
            raise result
        return result

    def synthesize(self, text: str, *, voice: str, rate: int, pitch: int, pitch_range: int,
                   phonemes: bool = False) -> Synthesis:
        """Speaks `text` (upper-case words are fine) with an espeak voice such as ``en-us+klatt3``.

        Args:
          text: words separated by spaces, or with `phonemes` espeak-ng mnemonics (see `foreign_phonemes`).
          voice: espeak-ng voice name, ``language+variant``.
          rate: words per minute (espeak default 175).
          pitch, pitch_range: 0..100 (espeak defaults 50).
          phonemes: `text` is phoneme input (case matters), not words. Default False.
        """
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r} (see espeak-ng --voices)")
        for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, 100)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        self._chunks, self._events = [], []
        data = f"[[{text}]]".encode() if phonemes else text.lower().encode()
        self._lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, _PHONEMES if phonemes else 0, None, None)
        audio = (np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)).astype(np.float32) / 32768
        return Synthesis(audio, self.sample_rate, self._segments(len(audio)))

    def _segments(self, num_samples: int) -> list[Segment]:
        # A phoneme lasts until the next one starts; a WORD event before a word's first phoneme (a stop closure
        # espeak renders as silence) moves that phoneme's start back to the word start.
        starts: list[list] = []
        word_start = None
        for kind, sample, name in self._events:
            if kind == _EVENT_WORD:
                word_start = sample
                continue
            start = sample if word_start is None else min(word_start, sample)
            word_start = None
            if starts and start < starts[-1][1]:
                start = starts[-1][1]
            starts.append([espeak_to_arpabet(name), start])
        segs = []
        for k, (phone, start) in enumerate(starts):
            end = starts[k + 1][1] if k + 1 < len(starts) else num_samples
            if end > start:
                segs.append(Segment(phone, start / self.sample_rate, end / self.sample_rate))
        return segs


def flite_synthesize(text: str, *, voice: str, duration_stretch: float, f0_mean: float) -> Synthesis:
    """Speaks `text` with flite and parses its ``-psdur`` phone end times.

    Args:
      text: words separated by spaces.
      voice: one of FLITE_VOICES.
      duration_stretch: >1 speaks slower (flite's duration_stretch feature).
      f0_mean: target mean pitch in Hz (flite's int_f0_target_mean).

    Example:
      >>> s = flite_synthesize("ONE", voice="slt", duration_stretch=1.0, f0_mean=170)
      >>> [seg.phone for seg in s.segments]
      ['SIL', 'W', 'AH', 'N', 'SIL']
    """
    check_tools(["flite"])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.wav")
        proc = subprocess.run(
            ["flite", "-voice", voice, "-t", text.lower(), "-psdur", "--setf", f"duration_stretch={duration_stretch}",
             "--setf", f"int_f0_target_mean={f0_mean}", "-o", path], capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(path):
            raise RuntimeError(f"flite failed for voice {voice!r}, text {text!r}: {proc.stderr.strip()}")
        with wave.open(path) as w:
            sr = w.getframerate()
            audio = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    segs, start = [], 0.0
    for item in proc.stdout.split():
        phone, _, end = item.rpartition(":")
        end = float(end)
        segs.append(Segment(flite_to_arpabet(phone), start, end))
        start = end
    return Synthesis(audio, sr, segs)


def festival_synthesize(text: str, *, voice: str, duration_stretch: float, f0_start: float,
                        f0_end: float) -> Synthesis:
    """Speaks `text` with festival and reads the end time of every segment it saved.

    Args:
      text: words separated by spaces.
      voice: one of FESTIVAL_VOICES.
      duration_stretch: >1 speaks slower (festival's Duration_Stretch; the HMM voice keeps its own durations).
      f0_start, f0_end: pitch in Hz at the start and the end of the utterance, straight in between (festival's
        DuffInt intonation; the HMM voice makes its own contour).

    Example:
      >>> s = festival_synthesize("ONE", voice="ked_diphone", duration_stretch=1.0, f0_start=120, f0_end=100)
      >>> [seg.phone for seg in s.segments]
      ['SIL', 'W', 'AH', 'N', 'SIL']
    """
    if voice not in FESTIVAL_VOICES:
        raise ValueError(f"unknown festival voice {voice!r}; choose one of {sorted(FESTIVAL_VOICES)}")
    if not text.replace(" ", "").isalpha():
        raise ValueError(f"festival text must be words of letters, not {text!r}")  # it goes into a Scheme string
    with tempfile.TemporaryDirectory() as tmp:
        wav_path, segs_path, script = (os.path.join(tmp, name) for name in ("out.wav", "out.segs", "say.scm"))
        with open(script, "w") as f:
            f.write(f"""(voice_{voice})
(Parameter.set 'Duration_Stretch {duration_stretch:.4f})
(Parameter.set 'Int_Method 'DuffInt)
(Parameter.set 'Int_Target_Method Int_Targets_Default)
(set! duffint_params '((start {f0_start:.2f}) (end {f0_end:.2f})))
(set! utt (utt.synth (Utterance Text "{text.lower()}")))
(utt.save.wave utt "{wav_path}" 'riff)
(utt.save.segs utt "{segs_path}")
""")
        proc = subprocess.run(["festival", "--batch", script], capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(segs_path):
            raise RuntimeError(f"festival failed for voice {voice!r}, text {text!r}: {proc.stderr.strip()}")
        with wave.open(wav_path) as w:
            sr = w.getframerate()
            audio = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
        with open(segs_path) as f:
            lines = f.read().split("#", 1)[1].split("\n")
    segs, start = [], 0.0
    for line in lines:
        if line.strip():
            end, _, phone = line.split()
            segs.append(Segment(flite_to_arpabet(phone), start, float(end)))
            start = float(end)
    return Synthesis(audio, sr, segs)
