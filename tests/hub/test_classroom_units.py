"""The class list is hostile input: logins become system users, homes and registry namespaces."""

from __future__ import annotations

import pytest

from grader.classroom.classlist import ClassListError, load, parse


def test_a_class_list_reads_the_instructor_and_learners_in_order() -> None:
    got = parse("# a class\ninstructor: grace\n\nada\n  alan  \n")
    assert got.instructor == "grace" and got.learners == ("ada", "alan")
    assert got.everyone == ("grace", "ada", "alan")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("ada\n", "no `instructor"),
        ("instructor: grace\n", "no learners"),
        ("instructor: grace\ninstructor: ada\nbob\n", "second instructor"),
        ("instructor: grace\nada\nada\n", "listed twice"),
        ("instructor: grace\ngrace\n", "listed twice"),
        ("instructor: grace\nroot\n", "system or course account"),
        ("instructor: grace\nlibrary\n", "system or course account"),
        ("instructor: grace\nlab04\n", "system or course account"),  # the labs' repositories
        ("instructor: grace\nautograde\n", "system or course account"),
        ("instructor: grace\nAda\n", "not a login"),
        ("instructor: grace\n../etc\n", "not a login"),
        ("instructor: grace\nada;rm -rf /\n", "not a login"),
        ("instructor: grace\n-ada\n", "not a login"),
        ("instructor: grace\n" + "a" * 31 + "\n", "not a login"),
        ("instructor: grace\nad\u0430\n", "not a login"),  # a Cyrillic 'a'
        ("instructor: grace\nada bob\n", "not a login"),
        ("instructor: grace\nada_\n", "not a login"),
        ("instructor: grace\nad--a\n", "not a login"),
    ],
)
def test_bad_class_lists_are_refused_with_the_line(text: str, why: str) -> None:
    with pytest.raises(ClassListError, match=why):
        parse(text, "class.txt")


def test_the_error_names_the_file_and_line(tmp_path) -> None:
    path = tmp_path / "class.txt"
    path.write_text("instructor: grace\nada\nBob\n")
    with pytest.raises(ClassListError, match=r"class.txt:3: 'Bob'"):
        load(path)
    with pytest.raises(ClassListError, match="cannot read it"):
        load(tmp_path / "missing.txt")


def test_the_example_class_list_in_the_repository_reads() -> None:
    from grader.classroom import hub

    got = load(hub.REPO / "hub" / "class.example.txt")
    assert got.instructor and got.learners


def test_the_registry_is_named_by_course_registry_on_a_hub(monkeypatch) -> None:
    from grader.course.labkit import registry_host

    monkeypatch.setenv("COURSE_REGISTRY", "10.233.0.1:580")
    assert registry_host() == "10.233.0.1:580"
    monkeypatch.delenv("COURSE_REGISTRY")
    assert registry_host().startswith("127.0.0.1:")


def test_the_registry_client_uses_what_docker_login_stored(tmp_path, monkeypatch) -> None:
    import base64
    import json

    from grader.docker.registry import RegistryClient, docker_credentials

    auth = base64.b64encode(b"ada:s3cret:with-colon").decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"http://10.233.0.1:580": {"auth": auth}, "bad": {"auth": "%%"}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert docker_credentials() == {"10.233.0.1:580": ("ada", "s3cret:with-colon")}
    assert RegistryClient().credentials == {"10.233.0.1:580": ("ada", "s3cret:with-colon")}
    assert RegistryClient(credentials={}).credentials == {}
    (tmp_path / "config.json").write_text("[" * 100_000)  # hostile: nesting, not a dict
    assert docker_credentials() == {}
