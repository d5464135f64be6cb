"""grader.parse.buildscript: what a build script would run, read without running it."""

from __future__ import annotations

from grader.parse import buildscript as buildsh


def _one_build(text: str) -> buildsh.BuildxBuild:
    script = buildsh.analyse(text)
    assert len(script.builds) == 1, script
    return script.builds[0]


def test_options_are_resolved() -> None:
    b = _one_build(
        'IMAGE="${IMAGE:-reg/app:1}"\n'
        "export BUILDX_NO_DEFAULT_ATTESTATIONS=1\n"
        "docker --context default buildx --builder mp build -f docker/Dockerfile --target=release"
        " \\\n  --platform=linux/amd64 --platform linux/arm64/v8 --build-arg V=2"
        ' -t "$IMAGE" --push app\n'
    )
    assert b.platforms == ["linux/amd64", "linux/arm64/v8"]
    assert [t.text for t in b.tags] == ["reg/app:1"]
    assert b.push and not b.load and b.exports_to_registry
    assert b.builder == "mp" and b.builder_source == "--builder"
    assert (b.file.text, b.target.text, b.context.text) == ("docker/Dockerfile", "release", "app")
    assert b.build_args["V"].text == "2"
    assert b.env["BUILDX_NO_DEFAULT_ATTESTATIONS"].text == "1"
    assert b.line == 3


def test_outputs() -> None:
    assert _one_build("docker buildx build -o type=image,name=r/a,push=true .").exports_to_registry
    assert _one_build("docker buildx build --output=type=registry .").exports_to_registry
    b = _one_build("docker buildx build --output type=docker .")
    assert b.loads and not b.exports_to_registry
    assert _one_build("docker buildx build -o out .").outputs == [{"type": "local", "dest": "out"}]


def test_guards_and_tolerance() -> None:
    s = buildsh.analyse(
        "set -e\n"
        "docker buildx inspect mp >/dev/null 2>&1 || docker buildx create --name mp\n"
        "docker buildx rm old || true\n"
        "if docker buildx inspect x; then docker buildx use x; "
        "else docker buildx create --name x; fi\n"
    )
    ops = {(o.action, o.name): o for o in s.builder_ops}
    assert ops[("inspect", "mp")].where.tolerated
    assert buildsh.Guard("mp", present=False) in ops[("create", "mp")].where.guards
    assert ops[("rm", "old")].where.tolerated
    assert buildsh.Guard("x", present=True) in ops[("use", "x")].where.guards
    assert buildsh.Guard("x", present=False) in ops[("create", "x")].where.guards
    assert all(o.where.errexit for o in s.builder_ops)


def test_functions_count_only_when_called_and_see_their_arguments() -> None:
    s = buildsh.analyse(
        'build() { docker buildx build --platform "$1" -t "$2" --push .; }\n'
        "unused() { docker buildx build --load .; }\n"
        "build linux/amd64,linux/arm64 reg/app:1\n"
    )
    assert len(s.builds) == 1
    assert s.builds[0].platforms == ["linux/amd64", "linux/arm64"]
    assert s.builds[0].where.function == "build"
    assert s.uncalled_functions == ["unused"]
    assert [m.how for m in s.mentions] == ["it is in unused(), which is never called"]


def test_case_on_a_known_value_takes_one_branch() -> None:
    s = buildsh.analyse(
        'case "${1:-push}" in\n'
        "  push) docker buildx build --push . ;;\n"
        "  load) docker buildx build --load . ;;\n"
        "esac\n"
    )
    assert [b.push for b in s.builds] == [True]


def test_for_loop_over_literal_items() -> None:
    s = buildsh.analyse(
        "for p in linux/amd64 linux/arm64; do docker buildx build --platform $p .; done"
    )
    assert [b.platforms for b in s.builds] == [["linux/amd64"], ["linux/arm64"]]


def test_builder_in_effect_follows_use_and_env() -> None:
    s = buildsh.analyse(
        "docker buildx create --name a --use || true\n"
        "docker buildx build .\n"
        "docker buildx use b\n"
        "docker buildx build .\n"
        "BUILDX_BUILDER=c docker buildx build .\n"
    )
    assert [(b.builder, b.builder_source) for b in s.builds] == [
        ("a", "use"),
        ("b", "use"),
        ("c", "BUILDX_BUILDER"),
    ]


def test_command_substitution_and_wrappers_run() -> None:
    s = buildsh.analyse(
        'DIGEST="$(sudo -E docker buildx build --push -q -t r/a .)"\ncommand -v docker >/dev/null\n'
    )
    assert len(s.builds) == 1 and s.builds[0].push


def test_exit_stops_only_when_unconditional() -> None:
    s = buildsh.analyse(
        '[ -n "$CI" ] && exit 0\ndocker buildx build .\nexit 1\ndocker buildx build --push .\n'
    )
    assert len(s.builds) == 1 and s.exit_line == 3


def test_pushed_image_prefers_the_multi_platform_push() -> None:
    s = buildsh.analyse(
        "docker buildx build --platform linux/arm64 --load -t local:test .\n"
        "docker buildx build --platform linux/arm64 --push -t reg/one:1 .\n"
        "docker buildx build --platform linux/amd64,linux/arm64 --push -t reg/multi:1 .\n"
    )
    assert buildsh.pushed_image(s, ("linux/amd64", "linux/arm64")).text == "reg/multi:1"


def test_recursion_and_loops_are_bounded() -> None:
    s = buildsh.analyse("f() { f; }\nf\nwhile true; do docker buildx build .; done\n")
    assert len(s.builds) == 1
    assert any(n.kind == "recursion" for n in s.notes)


def test_platform_key_normalises() -> None:
    assert buildsh.platform_key("linux/arm64/v8") == "linux/arm64"
    assert buildsh.platform_key("linux/aarch64") == "linux/arm64"
    assert buildsh.platform_key("arm64") == "linux/arm64"
    assert buildsh.covers(["linux/x86_64", "linux/arm64/v8"], ("linux/amd64", "linux/arm64"))
    assert not buildsh.covers(["linux/amd64"], ("linux/amd64", "linux/arm64"))


def test_boolean_check_flag_keeps_the_next_flag() -> None:
    """`--check` is boolean-like (pflag NoOptDefVal): it must not swallow `--builder X`."""
    b = _one_build(
        "docker buildx create --name mp\n"
        "docker buildx build --check \\\n  --builder mp --platform linux/amd64 --push -t r/a .\n"
    )
    assert b.builder == "mp" and b.builder_source == "--builder"
    assert b.platforms == ["linux/amd64"] and b.context.text == "."


def test_set_u_reads_of_names_never_set() -> None:
    """Under `set -u`, `"$BUILDER"` with BUILDER never set stops bash (the challenge's task 1)."""
    script = buildsh.analyse(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        'IMAGE="${IMAGE:-r/a}"\n'
        'docker buildx inspect "$BUILDER" || docker buildx create --name "$BUILDER"\n'
        'echo "$HOME ${OTHER:-d} ${#IMAGE} ${MAYBE-}"\n'
        'read -r ANSWER; echo "$ANSWER"\n'
        "set +u\necho $LATER\n"
    )
    assert script.nounset
    assert [(u.name, u.line) for u in script.unset_uses] == [("BUILDER", 4)]
    assert not buildsh.analyse('echo "$BUILDER"\n').unset_uses  # no set -u: empty, no stop
