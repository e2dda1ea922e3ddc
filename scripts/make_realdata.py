"""Regenerate /work/realdata/asterisk_prompts: real recorded speech, one folder per language.

A small labelled set the repo does not ship, laid out as a user lays out their own audio (one sub-folder per
class), to check the `folder` builder and configs/folder.py on real recordings. Source: Debian's
asterisk-core-sounds-{en,es,fr,it,ru}-wav (telephone prompts recorded by five voice talents, 8 kHz 16-bit wav,
CC-BY-SA-3.0 / CC-BY-3.0). Class = language. A prompt (e.g. `vm-intro`, `digits__7`) exists in most languages
under the same file name, so the group regex `^(.+)\\.wav$` keeps every translation of one prompt on one side
of the split: a test prompt is never heard in training in any language.

Needs: apt-get (downloads the .deb files, extracts them with dpkg-deb; installs nothing).
Usage: python scripts/make_realdata.py [--out /work/realdata]
"""
import argparse
import hashlib
import pathlib
import shutil
import subprocess
import tempfile

import soundfile

LANGUAGES = {"en": "en_US_f_Allison", "es": "es_MX_f_Allison", "fr": "fr_CA_f_June",
             "it": "it_IT_m_Carlo", "ru": "ru_RU_f_IvrvoiceRU"}
MIN_S, MAX_S = 0.5, 5.0
MAX_PER_CLASS = 240
MIN_LANGUAGES = 4  # keep prompts recorded in at least this many languages


def _prompts(voice_dir):
  """{prompt name: path} of every 0.5-5 s wav under one voice, sub-folders folded into the name."""
  found = {}
  for path in sorted(voice_dir.rglob("*.wav")):
    rel = path.relative_to(voice_dir)
    if rel.parts[0] == "silence":
      continue
    info = soundfile.info(str(path))
    if MIN_S <= info.frames / info.samplerate <= MAX_S:
      found["__".join(rel.with_suffix("").parts)] = path
  return found


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="/work/realdata")
  args = parser.parse_args()
  out = pathlib.Path(args.out) / "asterisk_prompts"
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    packages = [f"asterisk-core-sounds-{lang}-wav" for lang in LANGUAGES]
    subprocess.run(["apt-get", "download", *packages], cwd=tmp, check=True)
    for deb in sorted(tmp.glob("*.deb")):
      subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "x")], check=True)
    root = tmp / "x/usr/share/asterisk/sounds"
    per_language = {lang: _prompts(root / voice) for lang, voice in LANGUAGES.items()}
    counts = {}
    for prompts in per_language.values():
      for name in prompts:
        counts[name] = counts.get(name, 0) + 1
    common = sorted((n for n, c in counts.items() if c >= MIN_LANGUAGES),
                    key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    if out.exists():
      shutil.rmtree(out)
    for lang, prompts in per_language.items():
      chosen = [n for n in common if n in prompts][:MAX_PER_CLASS]
      (out / lang).mkdir(parents=True)
      for name in chosen:
        shutil.copyfile(prompts[name], out / lang / f"{name}.wav")
      print(lang, len(chosen))


if __name__ == "__main__":
  main()
