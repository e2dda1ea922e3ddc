"""Bad input never gets a traceback (issue 12): one table per entry point.

Each row runs the entry point as ``python -m`` would (in-process, in one
worker per entry point: tests/cli_harness.py) and checks the exit status,
that stderr holds exactly one ``error:`` line with the expected words and no
traceback, and that no output (or partial output) was left behind. Rows that
must work (step folders, stereo/24-bit/96 kHz files) check the output instead.
"""
import glob
import json
import os
import shutil

import jax
import numpy as np
import pytest
import soundfile

from cli_harness import CliWorker
from sonify_jax import deconvnet
from sonify_jax.errors import UserError
from sonify_jax.models.registry import CNN12_TINY
from sonify_jax.train import checkpoints, optim
from sonify_jax.train import state as state_lib

RATE = 8000


# ------------------------------------------------------------------ fixtures


def _make_run(workdir, arch="cnn12_tiny", steps=(0, 2)):
  """A run on disk as the trainer writes it (TrainState checkpoints +
  run.json), built without training: these tests are about the files."""
  model = state_lib.SimCLRModel(arch_name=arch, dropout_rate=0.1,
                                proj_hidden=32, proj_out=16)
  state = state_lib.create_train_state(
      model, optim.make_optimizer(1e-3, 0.0, 1, 10), jax.random.PRNGKey(0))
  ckpt = checkpoints.Checkpointer(workdir, keep_last=len(steps))
  for step in steps:
    ckpt.save(step, state.replace(step=state.step + step))
  ckpt.close()
  checkpoints.save_run_info(workdir, {"model": arch, "task": "simclr"},
                            arch=arch, task="simclr", num_classes=16)
  return workdir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  return _make_run(str(tmp_path_factory.mktemp("tiny") / "run"))


@pytest.fixture(scope="module")
def sonify_cli():
  worker = CliWorker("sonify_jax.sonify")
  yield worker
  worker.close()


def _tone(seconds, rate=RATE, channels=1, freq=440.0):
  t = np.arange(int(round(seconds * rate))) / rate
  tone = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
  return tone if channels == 1 else np.stack([tone] * channels, axis=1)


def _wav(path, audio, rate=RATE, subtype="PCM_16"):
  soundfile.write(str(path), audio, rate, subtype=subtype)
  return str(path)


def _data_files(run, step):
  """Orbax's array data files of a step, largest first."""
  files = [f for f in glob.glob(f"{run}/checkpoints/{step}/**/d/*",
                                recursive=True) if os.path.isfile(f)]
  return sorted(files, key=os.path.getsize, reverse=True)


def _garble(path, count, seed=0):
  data = bytearray(open(path, "rb").read())
  rng = np.random.default_rng(seed)
  start = len(data) // 3
  count = min(count, len(data) - start)
  data[start:start + count] = rng.integers(0, 256, count, np.uint8).tobytes()
  with open(path, "wb") as f:
    f.write(bytes(data))


def _assert_one_error(result, *words):
  assert result.code == 2, (result.code, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  lines = result.error_lines()
  assert len(lines) == 1, result.stderr[-3000:]
  for word in words:
    assert word in lines[0], lines[0]
  return lines[0]


def _assert_nothing_left(path):
  """Neither ``path`` nor a temporary sibling of it exists."""
  assert not os.path.exists(path), path
  parent, base = os.path.split(os.path.abspath(path))
  leftovers = [n for n in os.listdir(parent)
               if n.startswith((f".tmp_{base}", f".old_{base}"))]
  assert not leftovers, leftovers


# ------------------------------------------------------------ sonify table


def _setup_sonify(case, tmp, run):
  """(argv, out dir, expected words or None for success) of one row."""
  out = str(tmp / "out")
  clip = lambda: _wav(tmp / "clip.wav", _tone(0.5))  # pylint: disable=unnecessary-lambda-assignment
  args = ["--layer", "3", "--maps", "0,1", "--out", out]
  tiny = ["--model", "cnn12_tiny"]
  if case == "nan_wav":
    audio = _tone(0.5, 16000)
    audio[100:200] = np.nan
    return ["--audio", _wav(tmp / "nan.wav", audio, 16000, "FLOAT"), *args,
            *tiny], out, ["NaN"]
  if case == "missing_checkpoint_dir":
    return ["--audio", clip(), *args, "--checkpoint", str(tmp / "nope")
            ], out, ["does not exist", "nope"]
  if case == "not_a_run_dir":
    os.makedirs(tmp / "empty")
    return ["--audio", clip(), *args, "--checkpoint", str(tmp / "empty")
            ], out, ["not a sonify_jax run"]
  if case == "step_folder_works":
    return ["--audio", clip(), *args, "--checkpoint",
            os.path.join(run, "checkpoints", "0")], out, None
  if case == "step_folder_and_other_step":
    return ["--audio", clip(), *args, "--checkpoint",
            os.path.join(run, "checkpoints", "0"), "--step", "2"
            ], out, ["step 0", "step 2"]
  if case == "out_is_a_file":
    with open(out, "w") as f:
      f.write("mine")
    return ["--audio", clip(), *args, *tiny], out, ["not a folder"]
  if case == "out_holds_other_files":
    os.makedirs(out)
    with open(os.path.join(out, "notes.txt"), "w") as f:
      f.write("mine")
    return ["--audio", clip(), *args, *tiny], out, ["holds other files"]
  if case in ("garbled_array_files", "garbled_2000_bytes",
              "garbled_no_checksums"):
    copy = str(tmp / "run")
    shutil.copytree(run, copy)
    files = _data_files(copy, 2)
    for path in files if case == "garbled_array_files" else files[:1]:
      _garble(path, 2000 if case == "garbled_2000_bytes" else 10 ** 9)
    if case == "garbled_no_checksums":
      os.remove(os.path.join(copy, "checkpoints", "2",
                             checkpoints.CHECKSUMS_FILE))
      return ["--audio", clip(), *args, "--checkpoint", copy
              ], out, ["step 2", "is unreadable", "/checkpoints/2/"]
    return ["--audio", clip(), *args, "--checkpoint", copy
            ], out, ["corrupt", files[0] if case != "garbled_array_files"
                     else "checkpoints/2/"]
  if case == "negative_step":
    return ["--audio", clip(), *args, "--checkpoint", run, "--step=-1"
            ], out, ["no checkpoint for step -1", "have [0, 2]"]
  if case == "clip_0.1s_layer6_works":
    return ["--audio", _wav(tmp / "short.wav", _tone(0.1)), "--layer", "6",
            "--maps", "0", "--out", out, *tiny], out, None
  if case == "clip_0.1s_layer9_refused":
    return ["--audio", _wav(tmp / "short.wav", _tone(0.1)), "--layer", "9",
            "--maps", "0", "--out", out, *tiny
            ], out, ["800 samples", "receptive field of layer 9"]
  if case == "empty_file":
    open(tmp / "empty.wav", "wb").close()
    return ["--audio", str(tmp / "empty.wav"), *args, *tiny], out, ["empty"]
  if case == "text_named_wav":
    (tmp / "text.wav").write_text("hello, I am not audio\n" * 50)
    return ["--audio", str(tmp / "text.wav"), *args, *tiny
            ], out, ["cannot decode"]
  if case == "wav_0_samples":
    return ["--audio", _wav(tmp / "zero.wav", np.zeros(0, np.float32)),
            *args, *tiny], out, ["no samples"]
  if case == "wav_1_sample":
    return ["--audio", _wav(tmp / "one.wav", np.zeros(1, np.float32)),
            *args, *tiny], out, ["1 samples", "receptive field of layer 3"]
  if case == "missing_audio_file":
    return ["--audio", str(tmp / "none.wav"), *args, *tiny
            ], out, ["no such audio file"]
  if case == "stereo_works":
    return ["--audio", _wav(tmp / "st.wav", _tone(0.5, channels=2)), *args,
            *tiny], out, None
  if case == "24bit_works":
    return ["--audio", _wav(tmp / "b24.wav", _tone(0.5), subtype="PCM_24"),
            *args, *tiny], out, None
  if case == "96khz_works":
    return ["--audio", _wav(tmp / "hi.wav", _tone(0.5, 96000), 96000),
            *args, *tiny], out, None
  if case == "ten_minute_clip":
    return ["--audio", _wav(tmp / "long.wav", np.zeros(600 * RATE,
                                                       np.float32)),
            *args, *tiny], out, ["600.0 s", "--max_seconds"]
  if case == "layer_out_of_range":
    return ["--audio", clip(), "--layer", "12", "--maps", "0", "--out", out,
            *tiny], out, ["layer 12 is outside 1..11"]
  if case == "map_out_of_range":
    return ["--audio", clip(), "--layer", "3", "--maps", "0,8", "--out", out,
            *tiny], out, ["[8] out of range", "0..7"]
  if case == "maps_not_ints":
    return ["--audio", clip(), "--layer", "3", "--maps", "a,b", "--out", out,
            *tiny], out, ["--maps=a,b", "map indices like 0,5, or top:N"]
  if case == "top_0":
    return ["--audio", clip(), "--layer", "3", "--maps", "top:0", "--out",
            out, *tiny], out, ["top:0 is outside top:1..top:8"]
  if case == "unwritable_out_dir":
    if os.geteuid() == 0:  # root writes anywhere but in sysfs
      parent = "/sys"
    else:
      parent = str(tmp / "readonly")
      os.makedirs(parent)
      os.chmod(parent, 0o555)
    out = os.path.join(parent, "sonify_out")
    return ["--audio", clip(), *args[:-1], out, *tiny
            ], out, ["cannot write", out]
  if case == "missing_required_flag":
    return ["--layer", "3", "--out", out, *tiny], out, ["--audio is required"]
  if case == "unknown_flag":
    return ["--audio", clip(), *args, "--layers=3"], out, ["layers"]
  raise ValueError(case)


SONIFY_CASES = [
    "nan_wav", "missing_checkpoint_dir", "not_a_run_dir", "step_folder_works",
    "step_folder_and_other_step", "out_is_a_file", "out_holds_other_files",
    "garbled_array_files", "garbled_2000_bytes", "garbled_no_checksums",
    "negative_step", "clip_0.1s_layer6_works", "clip_0.1s_layer9_refused",
    "empty_file", "text_named_wav", "wav_0_samples", "wav_1_sample",
    "missing_audio_file", "stereo_works", "24bit_works", "96khz_works",
    "ten_minute_clip", "layer_out_of_range", "map_out_of_range",
    "maps_not_ints", "top_0", "unwritable_out_dir", "missing_required_flag",
    "unknown_flag"]


@pytest.mark.parametrize("case", SONIFY_CASES)
def test_sonify_cli(case, tmp_path, run_dir, sonify_cli):
  argv, out, words = _setup_sonify(case, tmp_path, run_dir)
  before = open(out).read() if os.path.isfile(out) else None
  result = sonify_cli.run(*argv)
  if words is None:
    assert result.code == 0, result.stderr[-3000:]
    index = json.load(open(os.path.join(out, "index.json")))
    wav, rate = soundfile.read(os.path.join(
        out, index["sonifications"][0]["wav"]))
    assert rate == RATE and wav.ndim == 1
    # Every input is resampled to 8 kHz mono: the output has its length.
    seconds = 0.1 if "0.1s" in case else 0.5
    assert wav.shape == (int(seconds * RATE),)
    return
  line = _assert_one_error(result, *words)
  print(f"{case}: {line}")
  if before is not None:  # --out named the user's file: left as it was
    assert open(out).read() == before
  elif case == "out_holds_other_files":
    assert os.listdir(out) == ["notes.txt"]
  else:
    _assert_nothing_left(out)


def test_sonify_help_exits_0(sonify_cli):
  result = sonify_cli.run("--help")
  assert result.code == 0 and "--audio" in result.stdout
  assert not result.error_lines()


def test_sonify_replaces_an_earlier_output_whole(tmp_path, sonify_cli):
  """A second run into the same --out replaces the folder: no file of the
  first run that the second did not write survives."""
  clip = _wav(tmp_path / "clip.wav", _tone(0.5))
  out = str(tmp_path / "out")
  base = ["--audio", clip, "--layer", "3", "--out", out, "--model",
          "cnn12_tiny"]
  assert sonify_cli.run(*base, "--maps", "0,1").code == 0
  assert sonify_cli.run(*base, "--maps", "2").code == 0
  assert sorted(os.listdir(out)) == ["index.json", "input.wav",
                                     "layer3_map2.png", "layer3_map2.wav"]
  _assert_nothing_left(str(tmp_path / "elsewhere"))  # no temp folders left
  assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


# ---------------------------------------------- the one short-clip rule


def test_short_clip_rule_is_the_same_in_api_and_cli(tmp_path, sonify_cli):
  """API and CLI refuse a clip shorter than the layer's receptive field with
  the same message (no padding anywhere)."""
  layer = 9
  samples = CNN12_TINY.min_input_length(layer) - 1
  with pytest.raises(UserError) as api_error:
    deconvnet.validate_request(np.zeros((1, samples), np.float32), layer,
                               [0], CNN12_TINY)
  path = _wav(tmp_path / "short.wav", _tone(samples / RATE))
  result = sonify_cli.run("--audio", path, "--layer", str(layer), "--maps",
                          "0", "--out", str(tmp_path / "out"), "--model",
                          "cnn12_tiny")
  line = _assert_one_error(result)
  assert line == f"error: {api_error.value}"
  # One sample more is enough for both.
  ok = _wav(tmp_path / "ok.wav", np.full(samples + 1, 0.1, np.float32))
  assert sonify_cli.run("--audio", ok, "--layer", str(layer), "--maps", "0",
                        "--out", str(tmp_path / "out2"), "--model",
                        "cnn12_tiny").code == 0


# ------------------------------------------------ checkpoint checksums


def test_checksums_catch_a_flipped_byte_and_old_runs_still_load(
    tmp_path, run_dir, caplog):
  run = str(tmp_path / "run")
  shutil.copytree(run_dir, run)
  intact, _ = checkpoints.load_encoder(run)
  victim = _data_files(run, 2)[-1]  # the smallest data file
  data = bytearray(open(victim, "rb").read())
  data[len(data) // 2] ^= 0x01  # one bit
  open(victim, "wb").write(bytes(data))
  with pytest.raises(checkpoints.CorruptCheckpointError, match=victim):
    checkpoints.load_encoder(run)
  with pytest.raises(checkpoints.CorruptCheckpointError, match=victim):
    checkpoints.load_state(run, step=2)
  # Step 0 is intact and still loads, also by its step folder.
  checkpoints.load_encoder(os.path.join(run, "checkpoints", "0"))
  # A run saved before checksums existed loads, with a warning.
  data[len(data) // 2] ^= 0x01
  open(victim, "wb").write(bytes(data))
  os.remove(os.path.join(run, "checkpoints", "2", checkpoints.CHECKSUMS_FILE))
  with caplog.at_level("WARNING"):
    loaded, arch = checkpoints.load_encoder(run)
  assert arch == "cnn12_tiny"
  assert "unverified" in caplog.text
  jax.tree.map(np.testing.assert_array_equal, loaded, intact)


def test_checksums_record_every_file_of_the_step(run_dir):
  step_dir = os.path.join(run_dir, "checkpoints", "2")
  recorded = json.load(open(os.path.join(step_dir,
                                         checkpoints.CHECKSUMS_FILE)))
  on_disk = {os.path.relpath(os.path.join(r, n), step_dir)
             for r, _, names in os.walk(step_dir) for n in names}
  assert set(recorded["files"]) == on_disk - {checkpoints.CHECKSUMS_FILE}
  assert checkpoints.verify_checksums(step_dir)


# ------------------------------------- the other entry points, one table


@pytest.fixture(scope="module")
def workers():
  started = {}
  def get(module):
    if module not in started:
      started[module] = CliWorker(module)
    return started[module]
  yield get
  for worker in started.values():
    worker.close()


def _setup_other(module, case, tmp, run):
  """(argv, output path that must not appear or None, expected words or
  None for success) of one row."""
  out = str(tmp / "out")
  simclr = "configs/demo_simclr.py"
  if module == "sonify_jax.main":
    if case == "unknown_config_field":
      return [f"--config={simclr}", f"--workdir={out}",
              "--config.nonexistent=1"], out, [
                  "unknown config field 'nonexistent'",
                  "the closest valid field is"]
    if case == "misspelt_config_field":
      return [f"--config={simclr}", f"--workdir={out}",
              "--config.batchsize=8"], out, [
                  "'batchsize'", "closest valid field is 'batch_size'"]
    if case == "config_arg_model_resnet":
      return [f"--config={simclr}:model=resnet", f"--workdir={out}"], out, [
          "model='resnet'", "cnn12_tiny"]
    if case == "batch_size_0":
      return [f"--config={simclr}", f"--workdir={out}",
              "--config.batch_size=0"], out, [
                  "config.batch_size must be an integer >= 1, got 0"]
    if case == "batch_size_not_int":
      return [f"--config={simclr}", f"--workdir={out}",
              "--config.batch_size=abc"], out, ["--config.batch_size=abc"]
    if case == "missing_config_file":
      return ["--config=configs/nope.py", f"--workdir={out}"], out, [
          "configs/nope.py", "No such file"]
    if case == "missing_workdir_flag":
      return [f"--config={simclr}"], None, ["--workdir"]
    if case == "run_dir_of_another_architecture":
      copy = str(tmp / "run")
      shutil.copytree(run, copy)
      return [f"--config={simclr}:model=cnn12_small", f"--workdir={copy}",
              "--config.progress=False"], None, [
                  "cnn12_tiny", "cnn12_small", "fresh --workdir"]
    if case == "unknown_dataset":
      return [f"--config={simclr}", f"--workdir={out}",
              "--config.dataset=bogus"], out, [
                  "config.dataset must be a dataset", "'bogus'",
                  "'folder:<name>'"]
    if case == "workdir_is_a_file":
      with open(out, "w") as f:
        f.write("mine")
      return [f"--config={simclr}", f"--workdir={out}"], None, [
          "Not a directory", out]
    if case == "init_from_missing_run":
      return ["--config=configs/demo_supervised.py:init=contrastive",
              f"--workdir={out}", f"--config.init_from={tmp}/nope",
              "--config.progress=False"], out, ["nope", "does not exist"]
    if case in _MAIN_FIELD_CASES:
      overrides, words = _MAIN_FIELD_CASES[case]
      return [f"--config={simclr}", f"--workdir={out}", *overrides
              ], out, words
    if case in _CONFIG_FILE_CASES:
      text, words = _CONFIG_FILE_CASES[case]
      path = tmp / "my_config.py"
      path.write_text(text)
      named = [] if case == "config_file_with_a_typo_field" else [str(path)]
      return [f"--config={path}", f"--workdir={out}"], out, [*named, *words]
    if case == "workdir_under_a_file":
      with open(tmp / "file", "w") as f:
        f.write("mine")
      return [f"--config={simclr}", f"--workdir={tmp}/file/run"], None, [
          "Not a directory", f"{tmp}/file"]
  if module == "sonify_jax.analysis.run":
    base = ["--study=topk", f"--workdir={out}"]
    if case == "missing_checkpoint_dir":
      return [*base, f"--checkpoint={tmp}/nope"], out, ["nope",
                                                        "does not exist"]
    if case == "unknown_study":
      return ["--study=bogus", f"--workdir={out}", f"--checkpoint={run}"
              ], out, ["--study"]
    if case == "layers_not_ints":
      return [*base, f"--checkpoint={run}", "--layers=three"], out, [
          "--layers=", "three", "must be block numbers"]
    if case == "corrupt_run":
      copy = str(tmp / "run")
      shutil.copytree(run, copy)
      victim = _data_files(copy, 2)[0]
      _garble(victim, 2000)
      return [*base, f"--checkpoint={copy}"], out, ["corrupt", victim]
    if case == "negative_step":
      return [*base, f"--checkpoint={run}", "--step=-1"], out, [
          "step -1", "have [0, 2]"]
    if case in ("k_0", "max_clips_0", "batch_size_0"):
      flag = {"k_0": "k", "max_clips_0": "max_clips",
              "batch_size_0": "batch_size"}[case]
      return [*base, f"--checkpoint={run}", f"--{flag}=0"], out, [
          f"--{flag}=0", "must be an integer >= 1"]
    if case == "layer_out_of_range":
      return [*base, f"--checkpoint={run}", "--layers=12"], out, [
          "layer 12 is outside 1..11"]
    if case == "step_folder_of_another_step":
      return [*base, f"--checkpoint={run}/checkpoints/2", "--step=0"], out, [
          "step 2", "step 0"]
    if case in _STUDY_FLAG_CASES:
      flags_, words = _STUDY_FLAG_CASES[case]
      return [f"--workdir={out}", f"--checkpoint={run}", *flags_], out, words
    if case in ("audio_dir_and_dataset", "train_split_with_audio_dir"):
      os.makedirs(tmp / "clips")
      other = ("--dataset=embedded" if case == "audio_dir_and_dataset"
               else "--train_split=train")
      return ["--study=layer_importance", f"--workdir={out}",
              f"--checkpoint={run}", f"--audio_dir={tmp}/clips", other
              ], out, (["--audio_dir", "--dataset"]
                       if case == "audio_dir_and_dataset"
                       else ["--train_split", "--audio_dir"])
    if case == "gallery_of_a_torn_topk_json":
      os.makedirs(tmp / "topk")
      (tmp / "topk" / "topk.json").write_text('{"layers": {"3": {"0": [')
      return ["--study=gallery", f"--workdir={out}",
              f"--checkpoint=a={tmp}/topk"], out, [
                  f"{tmp}/topk/topk.json", "not valid JSON"]
    if case == "gallery_of_a_topk_json_naming_missing_files":
      os.makedirs(tmp / "topk")
      entry = {"input_wav": "layer03/a_input.wav",
               "sonification_wav": "layer03/a_sonif.wav", "rank": 0,
               "activation": 1.0}
      (tmp / "topk" / "topk.json").write_text(json.dumps(
          {"layers": {"3": {"0": [entry]}}}))
      return ["--study=gallery", f"--workdir={out}",
              f"--checkpoint=a={tmp}/topk"], out, [
                  f"{tmp}/topk/topk.json", "missing file",
                  "layer03/a_input.wav"]
  if module == "sonify_jax.data.builders":
    if case == "missing_manual_dir":
      return ["--dataset=fsd50k", f"--manual_dir={tmp}/nope",
              f"--data_dir={out}"], out, ["nope", "not a directory"]
    if case == "unknown_dataset":
      os.makedirs(tmp / "src")
      return ["--dataset=imagenet", f"--manual_dir={tmp}/src",
              f"--data_dir={out}"], out, ["imagenet"]
    if case == "missing_required_flags":
      return ["--dataset=fsd50k"], None, ["--manual_dir"]
    if case in _BUILDER_FLAG_CASES:
      flags_, words = _BUILDER_FLAG_CASES[case]
      os.makedirs(tmp / "src", exist_ok=True)
      if case == "data_dir_is_a_file":
        with open(out, "w") as f:
          f.write("mine")
        return ["--dataset=folder", f"--manual_dir={tmp}/src",
                f"--data_dir={out}"], None, [out, *words]
      return [*flags_, f"--manual_dir={tmp}/src", f"--data_dir={out}"
              ], out, words
  if module == "sonify_jax.demo":
    if case == "workdir_is_a_file":
      with open(out, "w") as f:
        f.write("mine")
      return [f"--workdir={out}", "--quick"], None, [out]
    if case == "unknown_flag":
      return [f"--workdir={out}", "--fast"], out, ["fast"]
    if case == "workdir_on_gs":
      return ["--workdir=gs://bucket/demo", "--quick"], None, [
          "gs://bucket/demo", "local folder"]
  if module == "sonify_jax.analysis.aggregate":
    base = ["--study=coherence", f"--out={out}"]
    if case == "runs_match_nothing":
      return [*base, f"--runs={tmp}/nope*"], out, ["matches nothing"]
    if case == "confidence_1.5":
      os.makedirs(tmp / "seed0")
      return [*base, f"--runs={tmp}/seed*", "--confidence=1.5"], out, [
          "--confidence=1.5", "(0, 1)"]
    if case == "out_is_a_file":
      os.makedirs(tmp / "seed0")
      with open(out, "w") as f:
        f.write("mine")
      return [*base, f"--runs={tmp}/seed*"], None, [out, "--out",
                                                    "not a file"]
    if case == "torn_study_json":
      os.makedirs(tmp / "seed0")
      (tmp / "seed0" / "coherence.json").write_text('{"layers": [1, 2')
      return [*base, f"--runs={tmp}/seed*"], out, ["coherence.json",
                                                  "not valid JSON"]
  if module == "launch.tpu_vm":
    if case == "unknown_action":
      return ["launch", "--name=vm", "--zone=z", "--dry_run"], None, [
          "ACTION is one of"]
    if case == "missing_name":
      return ["up", "--zone=z", "--dry_run"], None, ["--name"]
  if module == "launch.sweep":
    if case == "missing_config":
      return [f"--workdir={out}", "--dry_run"], out, ["--config is required"]
    if case == "sweep_value_out_of_domain":
      return [f"--config={simclr}", f"--workdir={out}",
              "--sweep=config.augment.mix_p=0.5,2", "--dry_run"], out, [
                  "job augment.mix_p=2", "config.augment.mix_p", "[0, 1]"]
    if case == "extra_override_not_an_int":
      return [f"--config={simclr}", f"--workdir={out}",
              "--extra=--config.batch_size=many", "--dry_run"], out, [
                  "--config.batch_size=many", "not an integer"]
    if case == "config_file_syntax_error":
      (tmp / "bad.py").write_text("def get_config(:\n")
      return [f"--config={tmp}/bad.py", f"--workdir={out}", "--dry_run"
              ], out, ["syntax error", "bad.py"]
    if case == "bad_sweep_axis":
      return [f"--config={simclr}", f"--workdir={out}", "--sweep=tau",
              "--dry_run"], out, ["sweep axis 'tau'"]
  raise ValueError((module, case))


# sonify_jax.main on configs/demo_simclr.py: overrides -> expected words.
# Each was once caught late (a traceback from the optimiser, a run that
# trained anyway, an error after lines of other output), or not at all.
_MAIN_FIELD_CASES = {
    "learning_rate_negative": (["--config.learning_rate=-0.001"], [
        "config.learning_rate must be a number > 0, got -0.001"]),
    "dropout_1.5": (["--config.dropout=1.5"], [
        "config.dropout must be a number in [0, 1), got 1.5"]),
    "gain_p_above_1": (["--config.augment.gain_p=1.5"], [
        "config.augment.gain_p", "[0, 1]", "1.5"]),
    "noise_range_reversed": (["--config.augment.noise_range=(0.5,0.1)"], [
        "config.augment.noise_range", "low <= high"]),
    "total_steps_0": (["--config.total_steps=0"], [
        "config.total_steps", "got 0", "or -1"]),
    "warmup_steps_minus_5": (["--config.warmup_steps=-5"], [
        "config.warmup_steps", "got -5"]),
    "keep_steps_negative": (["--config.keep_steps=(0,-100)"], [
        "config.keep_steps", "(0, -100)"]),
    "listen_layers_12": (["--config.listen_layers=(3,12)"], [
        "config.listen_layers", "1..11"]),
    "listen_clips_negative": (["--config.listen_clips=-1"], [
        "config.listen_clips", "got -1"]),
    "eval_split_unknown": (["--config.eval_split=dev"], [
        "config.eval_split", "'dev'", "train_all"]),
    "train_split_malformed": (["--config.train_split=train[:10"], [
        "config.train_split", "train[:10"]),
    "compute_dtype_float64": (["--config.compute_dtype=float64"], [
        "config.compute_dtype", "'bfloat16'", "'float64'"]),
    "crop_below_receptive_field": (["--config.crop_seconds=0.1"], [
        "config.crop_seconds", "receptive field", "0.1"]),
    "best_mode_median": (["--config.best_mode=median"], [
        "config.best_mode", "'max'", "'median'"]),
    "temperature_0": (["--config.temperature=0"], [
        "config.temperature must be a number > 0"]),
    "batch_not_a_multiple_of_devices": (["--config.batch_size=12"], [
        "batch_size=12", "devices"]),
}

# Config files that cannot give a config -> words of the error line.
_CONFIG_FILE_CASES = {
    "config_file_syntax_error": (
        "def get_config(arg=None)\n  return None\n",
        ["syntax error", "line 1"]),
    "config_file_raises_on_import": (
        "raise RuntimeError('no GPU here')\n",
        ["RuntimeError: no GPU here", "importing"]),
    "config_file_without_get_config": (
        "import ml_collections\nCONFIG = ml_collections.ConfigDict()\n",
        ["no get_config"]),
    "config_file_get_config_returns_none": (
        "def get_config(arg=None):\n  pass\n", ["NoneType", "return"]),
    "config_file_get_config_raises_keyerror": (
        "def get_config(arg=None):\n  return {}['batch']\n",
        ["KeyError", "batch"]),
    "config_file_with_a_typo_field": (
        "from sonify_jax.config_files import common\n"
        "def get_config(arg=None):\n"
        "  c = common.base_config()\n"
        "  c.dataset = 'embedded'\n"
        "  c.learning_rat = 0.1\n"
        "  return c\n", ["config.learning_rat", "config.learning_rate?"]),
}

# sonify_jax.data.builders: flags -> words (checked before anything is
# listed, decoded or written).
_BUILDER_FLAG_CASES = {
    "num_workers_0": (["--dataset=folder", "--num_workers=0"], [
        "--num_workers=0", ">= 1"]),
    "split_seed_negative": (["--dataset=folder", "--split_seed=-3"], [
        "--split_seed=-3", ">= 0"]),
    "split_percent_two_shares": (["--dataset=folder",
                                  "--split_percent=80/20"], [
                                      "--split_percent=80/20", "80/10/10"]),
    "group_regex_unclosed": (["--dataset=folder", "--group_regex=(spk"], [
        "--group_regex=(spk", "a regular expression"]),
    "folder_flag_on_fsd50k": (["--dataset=fsd50k", "--split_seed=1"], [
        "--split_seed", "--dataset=folder only"]),
    "name_with_a_slash": (["--dataset=folder", "--name=a/b"], [
        "--name=a/b", "letters, digits"]),
    "data_dir_is_a_file": ([], ["--data_dir", "not a file"]),
}

# sonify_jax.analysis.run (run: the tiny run; checked before it is read):
# flags -> words. The first rows were tracebacks once.
_STUDY_FLAG_CASES = {
    "sanity_rules_empty": (["--study=sanity", "--rules="], [
        "--rules", "each one of 'deconvnet'"]),
    "layer_importance_modes_fc_only": (["--study=layer_importance",
                                        "--modes=fc_only"], [
                                            "--modes", "'fconly', 'full'"]),
    "coherence_with_rule": (["--study=coherence", "--rule=guided"], [
        "--rule is not used by --study=coherence"]),
    "gallery_with_max_maps": (["--study=gallery", "--max_maps=3"], [
        "--max_maps is not used by --study=gallery"]),
    "sanity_rule_twice": (["--study=sanity", "--rules=guided,guided"], [
        "--rules", "guided twice"]),
    "clip_seconds_0": (["--study=topk", "--clip_seconds=0"], [
        "--clip_seconds=0", "> 0"]),
    "step_not_a_step": (["--study=topk", "--step=best_one"], [
        "--step=best_one", "'latest'"]),
    "unknown_dataset": (["--study=topk", "--dataset=bogus"], [
        "--dataset=bogus", "folder:<name>"]),
    "residual_of_two_runs": (["--study=residual",
                              "--checkpoint=/tmp/other_run"], [
                                  "--study=residual studies 1 run", "got 2"]),
}

OTHER_CASES = [
    ("sonify_jax.main", c) for c in (
        # cli.run resets every flag before a run: rows may come in any order.
        "unknown_config_field", "misspelt_config_field",
        "missing_workdir_flag", "config_arg_model_resnet",
        "batch_size_not_int", "batch_size_0", "missing_config_file",
        "run_dir_of_another_architecture", "init_from_missing_run",
        "unknown_dataset", "workdir_is_a_file", "workdir_under_a_file",
        *_MAIN_FIELD_CASES, *_CONFIG_FILE_CASES)] + [
    ("sonify_jax.analysis.run", c) for c in (
        "missing_checkpoint_dir", "unknown_study", "layers_not_ints",
        "corrupt_run", "negative_step", "step_folder_of_another_step",
        "k_0", "max_clips_0", "batch_size_0", "layer_out_of_range",
        *_STUDY_FLAG_CASES, "audio_dir_and_dataset",
        "train_split_with_audio_dir", "gallery_of_a_torn_topk_json",
        "gallery_of_a_topk_json_naming_missing_files")] + [
    ("sonify_jax.data.builders", c) for c in (
        "missing_manual_dir", "unknown_dataset", "missing_required_flags",
        *_BUILDER_FLAG_CASES)] + [
    ("sonify_jax.demo", c) for c in ("workdir_is_a_file", "unknown_flag",
                                     "workdir_on_gs")] + [
    ("sonify_jax.analysis.aggregate", c) for c in (
        "runs_match_nothing", "torn_study_json", "confidence_1.5",
        "out_is_a_file")] + [
    ("launch.tpu_vm", c) for c in ("unknown_action", "missing_name")] + [
    ("launch.sweep", c) for c in (
        "missing_config", "bad_sweep_axis", "sweep_value_out_of_domain",
        "extra_override_not_an_int", "config_file_syntax_error")]


@pytest.mark.parametrize("module,case", OTHER_CASES)
def test_entry_point_bad_input(module, case, tmp_path, run_dir, workers):
  argv, out, words = _setup_other(module, case, tmp_path, run_dir)
  result = workers(module).run(*argv)
  line = _assert_one_error(result, *words)
  print(f"{module} {case}: {line}")
  if out is not None:
    _assert_nothing_left(out)


@pytest.mark.parametrize("module", [
    "sonify_jax.main", "sonify_jax.analysis.run", "sonify_jax.data.builders",
    "sonify_jax.demo", "sonify_jax.analysis.aggregate", "launch.tpu_vm",
    "launch.sweep"])
def test_entry_point_help_exits_0(module, workers):
  result = workers(module).run("--help")
  assert result.code == 0, result.stderr[-2000:]
  assert "--" in result.stdout and not result.error_lines()


def test_interrupted_sonify_leaves_the_previous_output(tmp_path, monkeypatch):
  """A sonify run that dies while writing (here: on its second map) leaves
  the earlier output folder exactly as it was and no temporary folder."""
  from sonify_jax import sonify_files  # pylint: disable=g-import-not-at-top
  params, arch = sonify_files.random_encoder("cnn12_tiny", 0)
  clip = _wav(tmp_path / "clip.wav", _tone(0.5))
  out = str(tmp_path / "out")
  sonify_files.sonify_file(clip, 3, "0", out, params, arch)
  before = {n: open(os.path.join(out, n), "rb").read()
            for n in os.listdir(out)}
  real_write_pair, calls = sonify_files.write_pair, []
  def dying_write_pair(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return real_write_pair(*args, **kwargs)
  monkeypatch.setattr(sonify_files, "write_pair", dying_write_pair)
  with pytest.raises(KeyboardInterrupt):
    sonify_files.sonify_file(clip, 3, "1,2", out, params, arch)
  after = {n: open(os.path.join(out, n), "rb").read()
           for n in os.listdir(out)}
  assert after == before
  assert sorted(os.listdir(tmp_path)) == ["clip.wav", "out"]


# ------------------------------------- launchers and benchmarks: every flag

FLAG_CHECKED_COMMANDS = [
    "launch.tpu_vm", "launch.multihost_check", "launch.sweep",
    "sonify_jax.convert", "sonify_jax.sonify", "sonify_jax.track",
    "sonify_jax.visualize",
    "sonify_jax.analysis.run",
    "sonify_jax.analysis.aggregate", "sonify_jax.data.builders",
    *sorted(f"benchmarks/{n}" for n in os.listdir(
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
            __file__))), "benchmarks")) if n.endswith("_bench.py") and
            n != "imported_bench.py")]


@pytest.mark.parametrize("command", FLAG_CHECKED_COMMANDS)
def test_every_flag_refuses_its_bad_values_first(command, workers):
  """Each flag of the command has a domain (flag_check), and every bad value
  its domain names ends in one ``error:`` line naming that flag, exit 2,
  before the command does anything (absl's validators run while parsing)."""
  worker = workers(command)
  found = worker.flag_cases()
  assert not found["unchecked"], found["unchecked"]
  assert found["cases"]
  for name, args in found["cases"]:
    line = _assert_one_error(worker.run(*args), f"--{name}")
    assert "must be" in line or "flag" in line, line
  assert worker.run("--help").code == 0


# ----------------------------- analysis.run: each study takes its own flags

# A valid value of every flag a study may or may not read (a new flag of
# analysis.run needs one here).
_GOOD_STUDY_FLAG_VALUES = {
    "step": "latest", "dataset": "embedded", "split": "test",
    "train_split": "train", "audio_dir": "{tmp}", "data_dir": "{tmp}",
    "layers": "2", "k": "2", "max_maps": "2", "maps_per_layer": "2",
    "modes": "fconly", "batch_size": "2", "clip_seconds": "1",
    "max_clips": "2", "rule": "guided", "rules": "guided",
    "maps_per_clip": "1", "pair_figures": "false", "explain": "true",
    "probe": "{tmp}"}


def test_every_study_refuses_a_flag_it_does_not_read(tmp_path, workers):
  """For every study of the registry and every flag of analysis.run it does
  not read, setting the flag (to a valid value) is refused with one line
  naming the flag and the study, before the checkpoint is looked at (it
  does not exist: reading it would say so). The flags it does read, set
  together, get past that check to the missing checkpoint: the refusal is
  the flag's, not the command's."""
  from sonify_jax.analysis import run as run_cli  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis import studies  # pylint: disable=g-import-not-at-top
  assert set(_GOOD_STUDY_FLAG_VALUES) == set(run_cli.FLAG_DOMAINS) - set(
      studies.COMMON_FLAGS)
  worker = workers("sonify_jax.analysis.run")
  out, missing = str(tmp_path / "out"), str(tmp_path / "no_run")
  value = lambda n: _GOOD_STUDY_FLAG_VALUES[n].format(tmp=tmp_path)  # pylint: disable=unnecessary-lambda-assignment
  names = studies.names()
  assert {"topk", "coherence", "sanity", "layer_importance", "gallery",
          "activity", "time_invariance"} <= set(names)
  refused = 0
  for name in names:
    study = studies.get(name)
    base = [f"--study={name}", f"--workdir={out}", f"--checkpoint={missing}"]
    for flag in sorted(_GOOD_STUDY_FLAG_VALUES):
      if flag in study.flags:
        continue
      line = _assert_one_error(worker.run(*base, f"--{flag}={value(flag)}"),
                               f"--{flag} is not used by --study={name}")
      assert "no_run" not in line, line
      refused += 1
    used = [f"--{f}={value(f)}" for f in sorted(study.flags)
            if f != "audio_dir"]   # --audio_dir replaces --dataset/--split
    line = _assert_one_error(worker.run(*base, *used), "no_run")
    assert "not used by" not in line, line
    _assert_nothing_left(out)
  # --rule is read by topk, atlas and pitch only (issue 28's example).
  assert refused >= 3 * len(names)


def test_layer_importance_on_a_folder_holds_out_whole_files(
    tmp_path, run_dir, workers):
  """``--audio_dir``: the probe is scored on clips of files it was not fit
  on. Each recording is saved twice (.wav and .flac: one source, two files
  of the same stem) in two class folders; the JSON's split, read back
  against the folder's own listing, has no recording on both sides and
  every file on exactly one."""
  folder = tmp_path / "clips"
  recordings = []
  for label, freq in (("low", 220.0), ("high", 1760.0)):
    os.makedirs(folder / label)
    for take in range(4):
      stem = f"{label}/take{take}"
      recordings.append(stem)
      tone = _tone(0.3, freq=freq * (1 + 0.05 * take))
      _wav(folder / f"{stem}.wav", tone)
      soundfile.write(str(folder / f"{stem}.flac"), tone, RATE)
  out = str(tmp_path / "li")
  result = workers("sonify_jax.analysis.run").run(
      "--study=layer_importance", f"--workdir={out}",
      f"--checkpoint={run_dir}", f"--audio_dir={folder}", "--layers=2",
      "--modes=fconly", "--batch_size=4")
  assert result.code == 0, result.stderr[-3000:]
  split = json.load(open(os.path.join(out, "layer_importance.json")))[
      "probe_split"]
  files = sorted(os.path.relpath(os.path.join(d, f), folder)
                 for d, _, fs in os.walk(folder) for f in fs)
  assert sorted(split["train_clips"] + split["test_clips"]) == files
  stem = lambda path: path.rsplit(".", 1)[0]  # pylint: disable=unnecessary-lambda-assignment
  train = {stem(p) for p in split["train_clips"]}
  test = {stem(p) for p in split["test_clips"]}
  assert not train & test, train & test
  assert train | test == set(recordings)
  assert len(test) >= 2 and len(train) >= 2
  assert "held-out clips" in result.stdout


def test_layer_importance_on_too_few_files_is_refused(tmp_path, run_dir,
                                                      workers):
  """Three files cannot give two held-out and two training files."""
  folder = tmp_path / "clips"
  os.makedirs(folder)
  for take in range(3):
    _wav(folder / f"take{take}.wav", _tone(0.3))
  out = str(tmp_path / "li")
  _assert_one_error(workers("sonify_jax.analysis.run").run(
      "--study=layer_importance", f"--workdir={out}",
      f"--checkpoint={run_dir}", f"--audio_dir={folder}", "--layers=2",
      "--modes=fconly"), "3 source file(s)", "at least 4 files")
  assert not os.path.exists(os.path.join(out, "layer_importance.json"))
