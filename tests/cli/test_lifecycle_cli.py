"""``imagebuild build abandon`` and the attempt cap from a shell (issue 31): a real process, a real
SQLite store and the local target's real files.

Abandon deletes what the build holds through its target (the build host's tree, its checkpoint
archive, its staged sealed image), never what the target cannot prove is the build's (another
build's checkpoint named in its outputs), records who and why, makes ``build_status`` read
``abandoned`` and every later ``begin`` exit 3. Without a spec nothing is deleted and what is
still held is listed. ``build create --max-attempts`` caps the attempts across runs (exit 3
naming the cap) and ``build allow`` grants more.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.local import HOST_MARK
from tests.cli.test_cli import run
from tests.operators.test_notify import Sink, sink

__all__ = ["sink"]


def _holding_build(
    url: str, work: Path, build_id: str, foreign: Path, clock: Callable[[], datetime] | None = None
) -> dict[str, Path]:
    """A failed local build holding a host tree, a checkpoint and a sealed image, all real files,
    whose milestone 15 also names another build's checkpoint (not its own); ``clock``: when."""
    store = open_store(url, clock=clock)
    store.init()
    store.create_build(build_id, pipeline="p", cloud="local", image_type="base", plan=[0, 10, 15, 95, 100])
    folder = work / build_id
    root = folder / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=debian\n")
    (root / HOST_MARK).write_text(build_id + "\n")
    checkpoint = folder / "checkpoint-010.tar"
    checkpoint.write_bytes(b"tar")
    sealed = folder / f"p-{build_id}.qcow2"
    sealed.write_bytes(b"qcow2")
    lease = store.begin(build_id, 10, owner="w")
    store.set_metadata(build_id, {"host_id": str(root)}, token=lease.token, state=10, actor="w")
    store.complete(build_id, 10, token=lease.token, outputs={"checkpoint_image": str(checkpoint)})
    lease = store.begin(build_id, 15, owner="w")
    store.complete(build_id, 15, token=lease.token, outputs={"checkpoint_image": str(foreign)})
    lease = store.begin(build_id, 95, owner="w")
    store.complete(build_id, 95, token=lease.token, outputs={"image_id": str(sealed)})
    lease = store.begin(build_id, 100, owner="w")
    store.fail(build_id, 100, token=lease.token, error="catalog unreachable")
    store.close()
    return {"host": root, "checkpoint": checkpoint, "sealed": sealed}


def test_abandon_deletes_what_the_build_holds_and_refuses_every_later_begin(tmp_path: Path, sink: Sink) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    work = tmp_path / "work"
    foreign = work / "other-build" / "checkpoint-010.tar"  # another build's: never deleted
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"theirs")
    files = _holding_build(url, work, "b-1", foreign)
    spec = tmp_path / "p.yaml"
    spec.write_text(
        f"pipeline: p\ncloud: local\nimage_type: base\ntarget: {{work_dir: {work}, catalog: {tmp_path / 'cat'}}}\n"
        "notify: {on: [delivered], to: [{webhook: {http_conn_id: builds_hook, endpoint: /hook}}]}\n"
    )
    hook = {"AIRFLOW_CONN_BUILDS_HOOK": json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": sink.port})}
    done = run("build", "abandon", "b-1", "--reason", "base image withdrawn", "--spec", str(spec), "--json",
               store=url, env=hook)  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    [(path, notice)] = sink.received  # a person's abandon is told as the watchdog's is, whatever notify.on lists
    assert path == "/hook" and notice["event"] == "abandoned" and notice["build_id"] == "b-1"
    assert "base image withdrawn" in notice["error"] and f"deleted build host {files['host']}" in notice["error"]
    assert notice["error"].startswith("abandoned by cli:") and answer["notified"] == ["webhook"]
    assert answer["build_status"] == "abandoned" and answer["newly_abandoned"] is True
    assert {(d["kind"], d["id"]) for d in answer["deleted"]} == {
        ("host", str(files["host"])),
        ("checkpoint", str(files["checkpoint"])),
        ("image", str(files["sealed"])),
    }
    assert [d["id"] for d in answer["not_found"]] == [str(foreign)]
    assert answer["still_held"] == []
    assert not any(path.exists() for path in files.values())
    assert foreign.read_bytes() == b"theirs"  # named in the record, not provably the build's: left alone
    shown = json.loads(run("build", "show", "b-1", "--json", store=url).stdout)
    assert shown["build_status"] == "abandoned"
    abandon = next(e for e in shown["events"] if e["kind"] == "abandon")
    assert "base image withdrawn" in abandon["detail"] and abandon["actor"].startswith("cli:")
    begun = run("build", "begin", "b-1", "100", "--owner", "late", store=url)
    assert begun.returncode == 3, begun.stderr
    assert "abandoned" in begun.stderr and len(begun.stderr.strip().splitlines()) == 1
    listed = json.loads(run("build", "list", "--status", "abandoned", "--json", store=url).stdout)
    assert [b["build_id"] for b in listed] == ["b-1"]
    pruned = run("store", "prune", "--older-than", "0h", "--json", store=url)
    assert pruned.returncode == 0, pruned.stderr
    assert run("build", "show", "b-1", store=url).returncode == 4  # prune removed the abandoned build


def test_abandon_without_a_spec_records_it_and_lists_what_is_still_held(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    work = tmp_path / "work"
    foreign = work / "x" / "checkpoint-010.tar"
    files = _holding_build(url, work, "b-2", foreign)
    empty = tmp_path / "no-specs"
    empty.mkdir()
    done = run("build", "abandon", "b-2", "--reason", "stop", env={"IMAGEBUILD_PIPELINES_DIR": str(empty)}, store=url)
    assert done.returncode == 0, done.stderr
    assert "build b-2 abandoned" in done.stdout
    assert f"still held: build host {files['host']}" in done.stdout and "no spec of pipeline p" in done.stdout
    assert all(path.exists() for path in files.values())  # nothing deleted without the target
    assert json.loads(run("build", "show", "b-2", "--json", store=url).stdout)["build_status"] == "abandoned"
    kept = json.loads(run("store", "prune", "--older-than", "0h", "--json", store=url).stdout)
    assert run("build", "show", "b-2", store=url).returncode == 0, kept  # still holds: kept
    again = run("build", "abandon", "b-2", "--reason", "again", "--spec", str(tmp_path / "missing.yaml"), store=url)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1


def test_create_max_attempts_caps_begin_across_runs_and_allow_grants_more(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    assert run("store", "init", store=url).returncode == 0
    create = ["build", "create", "c", "--pipeline", "p", "--cloud", "aws", "--image-type", "t"]
    assert run(*create, "--milestones", "0,5,100", "--max-attempts", "2", store=url).returncode == 0
    for owner in ("run-1", "run-2"):
        lease = json.loads(run("build", "begin", "c", "5", "--owner", owner, "--json", store=url).stdout)
        assert run("build", "fail", "c", "5", "--token", lease["token"], "--error", "x", store=url).returncode == 0
    capped = run("build", "begin", "c", "5", "--owner", "run-3", store=url)
    assert capped.returncode == 3
    assert "max_attempts 2" in capped.stderr and "imagebuild build allow c 5" in capped.stderr
    assert run("build", "allow", "c", "5", "--attempts", "0", "--reason", "x", store=url).returncode == 2
    allowed = run("build", "allow", "c", "5", "--attempts", "1", "--reason", "mirror fixed", store=url)
    assert allowed.returncode == 0 and "up to attempt 3" in allowed.stdout
    assert run("build", "begin", "c", "5", "--owner", "run-3", store=url).returncode == 0
    assert run(*create, "--milestones", "0,5,100", "--max-attempts", "0", store=url).returncode == 2


def test_a_shell_or_concourse_step_of_a_capped_or_abandoned_build_exits_3(tmp_path: Path) -> None:
    """``imagebuild milestone run`` (a shell step, Concourse's task) meets the store's refusals too:
    the spec's max_attempts reached, then the build abandoned, each exit 3 and one line naming it."""
    from tests.cli.test_milestone_run import SPEC, milestone_run

    spec = tmp_path / "shellrun.yaml"
    text = SPEC.format(tmp=tmp_path)
    assert 'exit 1"}' in text
    spec.write_text(text.replace('exit 1"}', 'exit 1", max_attempts: 1}'))
    assert milestone_run(spec, 0).returncode == 0
    assert milestone_run(spec, 5).returncode == 0
    assert milestone_run(spec, 42).returncode == 1  # its one attempt fails
    capped = milestone_run(spec, 42)
    assert capped.returncode == 3, capped.stderr
    assert "max_attempts 1" in capped.stderr.splitlines()[-1]
    url = f"sqlite:///{tmp_path}/state.db"
    assert run("build", "abandon", "sh-1", "--reason", "licence", "--spec", str(spec), store=url).returncode == 0
    abandoned = milestone_run(spec, 42)
    assert abandoned.returncode == 3, abandoned.stderr
    assert "abandoned" in abandoned.stderr.splitlines()[-1]


def test_abandon_of_a_build_that_reused_deletes_its_copy_never_the_source(tmp_path: Path) -> None:
    """#32: n2 started from its own copy of n1's checkpoint after 10 (the local target's real
    adopt_checkpoint, a hard link) and failed at 15; abandoning it deletes the copy and nothing of
    n1 (its checkpoint kept for reuse and its sealed image). n1, whose image n3 delivered again
    (nothing changed), and n3 are delivered: their abandon is refused (exit 3), nothing deleted."""
    from click.testing import CliRunner

    from airflow_provider_imagebuild.build.checkpoints import Checkpoint
    from airflow_provider_imagebuild.build.reuse import ReuseChoice, taken
    from airflow_provider_imagebuild.cli.main import cli
    from airflow_provider_imagebuild.spec.pipeline import TargetSpec
    from airflow_provider_imagebuild.targets.base import file_hash
    from airflow_provider_imagebuild.targets.local import LocalTarget
    from airflow_provider_imagebuild.targets.local_leaks import mark_build_folder

    url, work, plan = f"sqlite:///{tmp_path}/s.db", tmp_path / "work", [0, 5, 10, 15, 95, 100]
    spec = tmp_path / "p.yaml"
    spec.write_text(
        f"pipeline: p\ncloud: local\nimage_type: base\ntarget: {{work_dir: {work}, catalog: {tmp_path}/c}}\n"
    )
    target = LocalTarget(TargetSpec(work_dir=str(work), catalog=str(tmp_path / "c")), pipeline="p", image_type="base")
    store = open_store(url)
    mark_build_folder(work / "n1", "p", "n1")
    checkpoint, sealed = work / "n1/checkpoint-010.tar", work / "n1/p-n1.qcow2"
    checkpoint.write_bytes(b"the tree after 10")
    sealed.write_bytes(b"qcow2")
    target.ssh_public_key(store.create_build("n0", pipeline="p", cloud="local", image_type="base", plan=plan))
    (work / "n0/ssh").rename(work / "n1/ssh")  # n1's key pair (10 wrote it into the tree): n2 takes it
    made = {10: {"checkpoint_image": str(checkpoint), "checkpoint_sha256": file_hash(checkpoint)},
            95: {"image_id": str(sealed)}}  # fmt: skip
    store.create_build("n1", pipeline="p", cloud="local", image_type="base", plan=plan)
    for code in plan[1:]:
        lease = store.begin("n1", code, owner="w")
        store.complete("n1", code, token=lease.token, outputs=made.get(code), fingerprint=f"{code:064d}",
                       inputs={"previous": ""})  # fmt: skip

    store.create_build("n2", pipeline="p", cloud="local", image_type="base", plan=plan)
    lease = store.begin("n2", 5, owner="w")
    choice = ReuseChoice(store.get("n1"), 10, Checkpoint(10, str(checkpoint)))
    adopted = target.adopt_checkpoint(store.get("n2"), choice.source, choice.checkpoint)  # type: ignore[arg-type]
    store.reuse("n2", 5, token=lease.token, source="n1", taken=taken(choice, plan, 5, adopted))
    store.fail("n2", 15, token=store.begin("n2", 15, owner="w").token, error="mirror down")
    copy = Path(adopted["checkpoint_image"])
    assert copy.parent == work / "n2" and copy.samefile(checkpoint)  # a hard link: the same blocks

    store.create_build("n3", pipeline="p", cloud="local", image_type="base", plan=plan)
    lease = store.begin("n3", 5, owner="w")
    store.reuse("n3", 5, token=lease.token, source="n1", taken=taken(ReuseChoice(store.get("n1"), 100, None), plan, 5))

    def abandon(build_id: str) -> tuple[int, str]:
        got = CliRunner().invoke(cli, ["--store", url, "build", "abandon", build_id, "--reason", "r", "--spec",
                                       str(spec), "--json"])  # fmt: skip
        return got.exit_code, got.output

    code, out = abandon("n2")
    assert code == 0, out
    answer = json.loads(out)
    assert [(d["kind"], d["id"]) for d in answer["deleted"]] == [("checkpoint", str(copy))]
    assert answer["not_found"] == [] and answer["still_held"] == []
    assert not copy.exists() and checkpoint.read_bytes() == b"the tree after 10" and sealed.is_file()
    for delivered in ("n1", "n3"):
        code, out = abandon(delivered)
        assert code == 3 and "a delivered build is not abandoned" in out, out
    assert checkpoint.is_file() and sealed.is_file()
    assert store.get("n1").abandoned_at is None and store.get("n3").delivered
