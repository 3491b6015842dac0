"""Security checks over real SSH: hostile names run nothing, secrets never leak, private
files are 0600, unknown host keys need an explicit opt-in."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from pathlib import Path

import pytest
from migration import (
    SourceAccount,
    install_target,
    mailplan,
    make_source,
    ssh_host,
    unique_domain,
    write_spec,
)

pytestmark = pytest.mark.ssh
MSG = b"From a@x.example Mon Nov  2 10:00:00 2026\nFrom: a@x.example\nSubject: s\n\nhi\n\n"


def canary_names(canary: Path) -> list[str]:
    return [f"$(touch {canary})", f"`touch {canary}`", f"a;touch {canary}", f"b|touch {canary}",
            f"c'\"; touch {canary}", f"d&&touch {canary}"]


def test_hostile_alias_targets_and_folder_names_run_nothing(tmp_path, sshd):
    canary = tmp_path / "canary"
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "AnnPw1")])
    (src / "var/spool/mail/ann").write_bytes(MSG)
    mail = src / "home/ann/mail"
    mail.mkdir()
    safe = [n for n in canary_names(canary) if "/" not in n.split("touch ")[0]]
    for i, name in enumerate(canary_names(canary)):
        # '/' in the canary path makes nested folders: each part is a literal name too
        path = mail / name.replace(str(canary), f"c{i}")
        path.write_bytes(MSG)
    (mail / "nl\nname").write_bytes(MSG)
    target = install_target(tmp_path / "target")
    domain = unique_domain("s")
    for bad in canary_names(canary):
        spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                          source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                          domains={domain: {"import": {"uid_min": 1000},
                                            "aliases": {"sales": [bad]}}})
        res = mailplan("plan", str(spec))
        assert not canary.exists()
        assert res.returncode in (0, 1), res.stderr
        if res.returncode == 0:
            assert f"sales@{domain}" in res.stdout or "sales" in res.stdout
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"import": {"uid_min": 1000}}})
    plan = mailplan("plan", str(spec), check=True).stdout
    assert "holds control characters" in plan  # the newline folder: listed, not imported
    mailplan("apply", str(spec), "--auto-approve", check=True)
    assert not canary.exists()
    udir = target.tool("vuserinfo", "-d", f"ann@{domain}").stdout.decode().split("\n")[0]
    folders = sorted(p.name for p in Path(udir, "Maildir").iterdir() if p.name.startswith("."))
    assert ".$(touch c0)" in folders and ".`touch c1`" in folders and ".a;touch c2" in folders
    assert len(safe) == len(canary_names(canary))
    assert mailplan("verify", str(spec)).returncode == 0
    assert not canary.exists()


def test_no_secret_in_any_output_and_private_files(tmp_path, sshd):
    pw = {"ann": "AnnSecret#1", "bob": "BobSecret#2"}
    accounts = [SourceAccount(n, 1000 + i, n.title(), p) for i, (n, p) in enumerate(pw.items())]
    src = make_source(tmp_path / "source", accounts)
    hashes = [line.split(":")[1] for line in (src / "etc/shadow").read_text().splitlines()
              if line.split(":")[1].startswith("$6$")]
    target = install_target(tmp_path / "target")
    domain = unique_domain("k")
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target,
                      source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                      domains={domain: {"postmaster_password": {"env": "PM_SECRET"},
                                        "import": {"uid_min": 1000}}})
    env = {"PM_SECRET": "PmSecret#3", "TEST_PW": pw["ann"]}
    outputs = [mailplan("plan", str(spec), "-o", str(tmp_path / "p.json"), env=env),
               mailplan("plan", str(spec), "--json", env=env),
               mailplan("apply", str(tmp_path / "p.json"), env=env),
               mailplan("verify", str(spec), "--json", env=env),
               mailplan("verify", str(spec), "--check-login", f"ann@{domain}",
                        "--password-env", "TEST_PW", env=env),
               mailplan("verify", str(spec), "--check-login", f"ann@{domain}",
                        "--password-env", "TEST_PW", env={**env, "TEST_PW": "Wrong#9"})]
    assert outputs[2].returncode == 0, outputs[2].stderr
    assert outputs[4].returncode == 0 and outputs[5].returncode == 3
    # a failing apply's error text too: the target's vadduser is gone
    Path(target.vpopmail_dir, "bin/vadduser").rename(tmp_path / "vadduser.off")
    spec2 = write_spec(tmp_path / "m2.yaml", source_root=src, target=target,
                       source_host=ssh_host(sshd), target_host=ssh_host(sshd),
                       domains={unique_domain("k"): {"postmaster_password": {"env": "PM_SECRET"},
                                                     "import": {"uid_min": 1000}}})
    outputs.append(mailplan("apply", str(spec2), "--auto-approve", env=env))
    assert outputs[-1].returncode == 1
    texts = [o.stdout + o.stderr for o in outputs]
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name != "source"
             and "target" not in p.parts and p.name != "shadow" and p.suffix != ".off"]
    assert any(".state.json" in p.name for p in files) and any(p.suffix == ".log" for p in files)
    texts += [p.read_bytes().decode("utf-8", "replace") for p in files]
    for secret in [*pw.values(), "PmSecret#3", "Wrong#9", *hashes]:
        assert not any(secret in t for t in texts), secret
    for p in files:
        if p.name.endswith((".state.json", ".json", ".journal", ".lock", ".key")) or \
                p.suffix == ".log":
            assert oct(p.stat().st_mode & 0o777) == "0o600", p
    # a saved plan's password fingerprints are keyed with a key kept beside the state,
    # not a plain digest anyone holding the plan file could test guesses against
    saved = json.loads((tmp_path / "p.json").read_text())
    (fp,) = [c["fingerprint"] for c in saved["changes"] if c["kind"] == "domain"]
    assert fp and fp != hashlib.sha256(b"mailplan-secret\0PmSecret#3").hexdigest()[:16]
    key = bytes.fromhex((tmp_path / "m.state.json.key").read_text())
    assert fp == hmac.new(key, b"PmSecret#3", hashlib.sha256).hexdigest()[:16]


def test_unknown_host_key_needs_the_opt_in(tmp_path, sshd):
    src = make_source(tmp_path / "source", [SourceAccount("ann", 1000, "Ann", "pw")])
    target = install_target(tmp_path / "target")
    known = tmp_path / "known_hosts"
    known.write_text("")
    host = {**ssh_host(sshd), "known_hosts": str(known)}
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target, source_host=host,
                      target_host=host, domains={unique_domain(): {}})
    res = mailplan("plan", str(spec))
    assert res.returncode == 1 and re.search(
        r"is unknown \(it offered ssh-ed25519 SHA256:\S+\); refusing to connect", res.stderr)
    assert known.read_text() == ""
    host["accept_new_host_key"] = True
    spec = write_spec(tmp_path / "m.yaml", source_root=src, target=target, source_host=host,
                      target_host=host, domains={unique_domain(): {}})
    mailplan("plan", str(spec), check=True)
    assert sshd.host_pubkey in known.read_text()
    os.chmod(known, 0o600)
