"""What the tests and the benchmarks share, and nothing else imports (not installed: only
`agent` is in the wheel):

- services: a private PulseAudio behind an ALSA tap (`start_pulse_with_tap`, `read_tap`),
  process bookkeeping (`Processes`), `wait_for`, LOGS, `HarnessError`;
- microphone: the virtual microphone on that PulseAudio;
- desktop: Xvfb, a session bus with dunst, the trayer tray host, a FIFO evdev keyboard, xdotool
  and screenshot helpers;
- llm_servers: llama.cpp's server, a misbehaving fault server, an event-loop thread;
- speech_samples: sentences per language, human clips, the word error rate;
- fakes: test doubles (ToneSynth, ScriptedBackend, SlowSink, RecordingPlayer, recorders);
- tray_agent: the tray agent (`python -m agent`) in a process of its own, its log waited on,
  `voice-agent quit` timed; a loopback npm registry that never answers (a hung voice fetch);
- token_flood: a loopback OpenAI-compatible server that streams an opening sentence, then
  floods tokens as fast as it can on a signal (bench.interrupt_path's case b);
- soak: the soak run by `python -m bench.soak` and, shortened, by tests/test_soak.py;
- sound_server_restart: a program (`python -m harness.sound_server_restart`) for
  tests/test_audio_recovery.py.

The pytest fixtures that wrap these are in tests/conftest.py; nothing here imports pytest.
"""
