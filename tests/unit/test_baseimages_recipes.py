"""The base-image recipes: which platforms each is built for, and what forces a rebuild."""

from __future__ import annotations

import dataclasses

from grader.engine import baseimages


def _recipe(name: str) -> baseimages.Recipe:
    return next(r for r in baseimages.RECIPES if r.name == name)


def test_busybox_and_debian_add_arm_v7_the_others_stay_two_platform():
    for name in ("busybox", "debian"):
        assert _recipe(name).platforms == ("linux/amd64", "linux/arm64", "linux/arm/v7")
    for name in ("python", "golang", "registry"):
        assert _recipe(name).platforms == ("linux/amd64", "linux/arm64")


def test_each_rootfs_platform_has_a_debian_arch_and_the_file_the_dockerfile_adds():
    debian = _recipe("debian")
    assert [baseimages.DEBIAN_ARCH[p] for p in debian.platforms] == ["amd64", "arm64", "armhf"]
    names = [baseimages.rootfs_name(p) for p in debian.platforms]
    assert names == ["rootfs-amd64.tar", "rootfs-arm64.tar", "rootfs-armv7.tar"]
    assert "ADD rootfs-${TARGETARCH}${TARGETVARIANT}.tar /" in debian.files()["Dockerfile"].decode()


def test_a_changed_platform_list_changes_the_recipe_hash_and_so_rebuilds():
    busybox = _recipe("busybox")
    two = dataclasses.replace(busybox, platforms=("linux/amd64", "linux/arm64"))
    assert two.digest() != busybox.digest()
    assert busybox.digest() == _recipe("busybox").digest()  # stable: no rebuild when unchanged
