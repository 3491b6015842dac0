"""The plan's check of new users' directories against vpopmail's 160-byte limit.

The hashed sub-directories vpopmail hands out are taken from the recorded layout of
351 users and 123 domains (reference/vpopmail/14-many-users-dir-hashing.md) and from
the stand-in's reimplementation of bigdir.c, which the transcripts test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from reference import recorded

from mailplan.desired import Catchall, Desired, DesiredDomain, DesiredUser, Password
from mailplan.diff import diff
from mailplan.facts.vpopmail import (
    DirHashing,
    TargetDomain,
    TargetFacts,
    TargetUser,
    parse_dir_control,
)
from mailplan.secret import Secret
from mailplan.userdirs import MAX_PW_DIR, NextDirs, dir_problems, withhold_unmakeable

VP = "/home/vpopmail"
PW = Password("hash", Secret("$1$saltsalt$RiZ4O533shs928qfyqLuE/"), "shadow")
BULK = "14-many-users-dir-hashing.md"


def recorded_state(user: str) -> tuple[DirHashing, str]:
    """bulk.example's .dir-control after ``user`` was added, and that user's directory."""
    _, out = recorded(BULK, "cat /home/vpopmail/domains/bulk.example/.dir-control | tr '\\n' "
                      f"'|'; echo; grep '^{user}:' /home/vpopmail/domains/bulk.example/vpasswd"
                      " | cut -d: -f1,6")
    control, line = out.split("\n")[:2]
    return parse_dir_control(control.replace("|", "\n")), line.split(":", 1)[1]


def hashed_part(user_dir: str) -> str:
    """The hashed sub-directory of a bulk.example user's directory ("" = none)."""
    rest = user_dir.removeprefix("/home/vpopmail/domains/bulk.example/")
    return rest.rpartition("/")[0]


@pytest.mark.parametrize(("before", "added"), [
    ("user098", "user099"), ("user099", "user100"), ("user100", "user101"),
    ("user101", "user102"), ("user198", "user199"), ("user199", "user200"),
    ("user200", "user201"), ("user300", "user301"),
])
def test_the_next_users_directory_is_the_one_vpopmail_gave(before, added):
    state, _ = recorded_state(before)
    after, user_dir = recorded_state(added)
    nxt = NextDirs(state)
    assert nxt.peek() == hashed_part(user_dir)
    nxt.take()
    assert (nxt.count, nxt.current) == (after.count, after.current)


def test_a_fresh_domain_hands_out_its_top_level_to_the_first_99_entries():
    _, first = recorded_state("user098")
    assert hashed_part(first) == ""
    nxt = NextDirs(DirHashing(1, ""))  # after vadddomain: postmaster was the first
    dirs = []
    for _ in range(120):
        dirs.append(nxt.peek())
        nxt.take()
    assert dirs[:98] == [""] * 98 and dirs[98:] == ["0"] * 22  # user099 went to 0/


def test_a_freed_sub_directory_is_handed_out_first():
    # 14: vdeluser user150 (in 0/), then user351 went to 0/ and user150 again to 2/
    _, out = recorded(BULK, "/home/vpopmail/bin/vdeluser user150@bulk.example; ls -d "
                      "/home/vpopmail/domains/bulk.example/0/user150 2>&1; cat "
                      "/home/vpopmail/domains/bulk.example/.dir-control | tr '\\n' '|'; echo")
    control = out.split("\n")[1].replace("|", "\n")
    nxt = NextDirs(parse_dir_control(control, "0\n"))
    assert nxt.peek() == "0"
    nxt.take()
    assert nxt.count == 351 and nxt.peek() == "2"


def test_domain_directories_are_hashed_the_same_way():
    # 14: 23 domains, then bulkdom001..100: bulkdom077 was the first in domains/0/
    _, out = recorded(BULK, "cat /home/vpopmail/domains/.dir-control | tr '\\n' '|'; echo; "
                      "ls /home/vpopmail/domains | wc -l")
    nxt = NextDirs(parse_dir_control(out.split("\n")[0].replace("|", "\n")))
    dirs = []
    for _ in range(100):
        dirs.append(nxt.peek())
        nxt.take()
    assert dirs.index("0") == 76 and set(dirs[76:]) == {"0"}
    _, out = recorded(BULK, "cat /home/vpopmail/domains/.dir-control | tr '\\n' '|'; echo")
    after = parse_dir_control(out.strip().replace("|", "\n"))
    assert (nxt.count, nxt.current) == (after.count, after.current) == (123, "0")


def test_next_dirs_follow_the_stand_ins_bigdir(tmp_path):
    """Against the stand-in's bigdir.c (the file written and read back at each entry,
    as vadduser does) through the first level; past it, nothing is claimed."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "standin"))
    import vpopmail_standin as standin

    path = str(tmp_path / ".dir-control")
    nxt = NextDirs(DirHashing(0, ""))
    claimed = 0
    for n in range(6400):
        dc = standin.DirControl(path)
        given = dc.next_dir()
        dc.write(-1, -1)
        predicted = nxt.peek()
        assert predicted == given if predicted is not None else len(given) <= 5, n
        claimed += predicted is not None
        nxt.take()
    # "", then "0" to "z": past those (from the 6,300th entry, "0/0") nothing is claimed
    assert claimed == 6299 and not nxt.known
    assert NextDirs(None).peek() is None


def domain(name, users, catchall=None):
    dom = DesiredDomain(name, None, catchall or Catchall("bounce"))
    for user in users:
        source = None if user.startswith("spec") else user  # "spec...": no source account
        # a short comment: with these long directories the vpasswd line stays within
        # what vuserinfo -D lists (test_a_vpasswd_line_longer_than_vuserinfo_lists...)
        dom.users[user] = DesiredUser(user, name, source, PW, None, "c")
    return dom


FIVE = DirHashing(5, "")  # postmaster and four users: the next ones at the top level


def existing(name, users=(), hashing=FIVE, ddir=None):
    tu = {u: TargetUser(u, Secret("x"), u, 0, f"{VP}/domains/{name}/{u}", "NOQUOTA")
          for u in users}
    return TargetDomain(name, ddir or f"{VP}/domains/{name}", (), tu, None, hashing)


def name_for(size: int, base: str) -> str:
    """A user name making ``base/NAME`` exactly ``size`` bytes."""
    return "u" * (size - len(base.encode()) - 1)


D = "d" * 60 + ".long-domain.example"  # its directory under VP is 103 bytes


@pytest.mark.parametrize(("size", "withheld"), [(MAX_PW_DIR, False), (MAX_PW_DIR + 1, True)])
def test_the_whole_path_counts_up_to_160_bytes(size, withheld):
    user = name_for(size, f"{VP}/domains/{D}")
    target = TargetFacts("new", {D: existing(D)})
    problems = dir_problems(Desired({D: domain(D, [user])}, []), target, VP)
    assert bool(problems) is withheld
    if withheld:
        (p,) = problems
        assert (p.domain, p.user) == (D, user)
        assert p.message.startswith(f"its directory {VP}/domains/{D}/{user} would be 161 "
                                    "bytes long; vpopmail stores at most 160 bytes")
        assert p.message.endswith(f"not created (list it in the spec with a shorter name: "
                                  f"name: NEW, from: {user})")


def test_bytes_are_utf8_bytes():
    ddir = f"/srv/vpöpmäil/domains/{D}"  # 2 characters of 2 bytes each
    user = name_for(MAX_PW_DIR - 1, ddir.replace("ö", "o").replace("ä", "a"))
    target = TargetFacts("new", {D: existing(D, ddir=ddir)})
    (p,) = dir_problems(Desired({D: domain(D, [user])}, []), target, VP)
    assert "would be 161 bytes long" in p.message


def test_a_hashed_sub_directory_counts():
    user = name_for(MAX_PW_DIR - 1, f"{VP}/domains/{D}")  # fits only at the top level
    top = TargetFacts("new", {D: existing(D, hashing=DirHashing(98, ""))})
    assert dir_problems(Desired({D: domain(D, [user])}, []), top, VP) == []
    hashed = TargetFacts("new", {D: existing(D, hashing=DirHashing(99, ""))})
    (p,) = dir_problems(Desired({D: domain(D, [user])}, []), hashed, VP)
    assert f"{D}/0/{user} would be 161 bytes" in p.message


def test_a_withheld_user_takes_no_place_in_the_hashing():
    # the 99th entry is the last at the top level: "a..." is withheld, so "b..." gets
    # that place and fits; with "a..." added, it would go to 0/ and not fit
    long, fits = "a" * 64, "b" * len(name_for(MAX_PW_DIR, f"{VP}/domains/{D}"))
    target = TargetFacts("new", {D: existing(D, hashing=DirHashing(98, ""))})
    problems = dir_problems(Desired({D: domain(D, [long, fits])}, []), target, VP)
    assert [p.user for p in problems] == [long]


def test_unknown_hashing_counts_the_longest_sub_directory():
    fits = name_for(MAX_PW_DIR - 6, f"{VP}/domains/{D}")
    over = fits + "u"
    target = TargetFacts("new", {D: existing(D, hashing=None)})
    (p,) = dir_problems(Desired({D: domain(D, [fits, over])}, []), target, VP)
    assert p.user == over
    assert p.message.startswith(f"its directory {VP}/domains/{D}/X/Y/Z/{over} could be up "
                                "to 161 bytes long (X/Y/Z stands for the hashed")


def test_a_new_domains_directory_is_predicted():
    user = name_for(MAX_PW_DIR, f"{VP}/domains/{D}")
    desired = Desired({D: domain(D, [user])}, [])
    assert dir_problems(desired, TargetFacts("new", domain_hashing=DirHashing(23, "")),
                        VP) == []
    (p,) = dir_problems(desired, TargetFacts("new", domain_hashing=DirHashing(99, "")), VP)
    assert p.message.startswith(f"its directory {VP}/domains/0/{D}/{user} would be 162")
    (p,) = dir_problems(desired, TargetFacts("new"), VP)  # the domains' .dir-control unread
    assert f"{VP}/domains/X/Y/Z/{D}/{user} could be up to 166" in p.message


def test_new_domains_take_their_places_in_order():
    first, second = "a" + D, "b" + D
    users = {n: name_for(MAX_PW_DIR, f"{VP}/domains/{n}") for n in (first, second)}
    desired = Desired({n: domain(n, [u]) for n, u in users.items()}, [])
    problems = dir_problems(desired, TargetFacts("new", domain_hashing=DirHashing(98, "")), VP)
    assert [p.domain for p in problems] == [second]  # the 100th domain goes to domains/0/


def test_users_already_there_and_alias_domains_are_not_checked():
    long = "l" * 64
    ddir = f"{VP}/domains/{'x' * 90}"
    target = TargetFacts("new", {D: existing(D, [long], ddir=ddir)}, {"alias.example": D})
    desired = Desired({D: domain(D, [long]), "alias.example": domain("alias.example", [long])},
                      [])
    assert dir_problems(desired, target, VP) == []


SHA512 = "$6$" + "s" * 16 + "$" + "c" * 86  # as long as a SHA-512 crypt hash is


@pytest.mark.parametrize("password", [Password("hash", Secret(SHA512), "shadow"),
                                      Password("clear", Secret("pw"), "env PW")])
def test_a_vpasswd_line_longer_than_vuserinfo_lists_is_not_created(password):
    """vuserinfo -D reads vpasswd in pieces of 299 bytes and stops at a longer line:
    every later plan refused the listing, so a user whose line would be longer is left
    out. A clear password is stored as a SHA-512 crypt hash, as long as SHA512."""
    ddir = f"{VP}/domains/{D}"  # 103 bytes
    name = "n" * 20
    # NAME:HASH:1:0:COMMENT:DIR:NOQUOTA and its line end: 299 bytes with this comment
    fits = 299 - (20 + 106 + 1 + 1 + (len(ddir) + 1 + 20) + len("NOQUOTA") + 7)
    assert fits == 33
    for comment, withheld in (("c" * fits, False), ("c" * (fits + 1), True)):
        dom = DesiredDomain(D, None, Catchall("bounce"))
        dom.users[name] = DesiredUser(name, D, name, password, None, comment)
        problems = dir_problems(Desired({D: dom}, []), TargetFacts("new", {D: existing(D)}),
                                VP)
        assert bool(problems) is withheld, problems
    (p,) = problems
    assert (p.domain, p.user) == (D, name)
    assert p.message == (
        "its vpasswd line (name, hash, comment, directory and quota) would be 300 bytes "
        "long; vuserinfo -D lists no user past a line longer than 299 bytes, so every "
        "later plan would stop at it; not created (give it a shorter comment: in the spec)")


def test_a_user_without_a_source_account_gets_a_plain_hint():
    ddir = f"{VP}/domains/{'x' * 120}"
    target = TargetFacts("new", {D: existing(D, ddir=ddir)})
    (p,) = dir_problems(Desired({D: domain(D, ["spec" * 10])}, []), target, VP)
    assert p.message.endswith("not created (give it a shorter name in the spec)")


def test_withheld_users_are_not_planned_and_the_plan_says_why():
    """A new domain whose catch-all was to deliver to a withheld user bounces unknown
    recipients: vadddomain's own .qmail-default would delete them silently, while the
    plan said where they go."""
    long = "l" * 64
    dom = domain(D, ["ann", long], Catchall("deliver_to", long))
    desired = Desired({D: dom}, [])
    target = TargetFacts("new")
    withhold_unmakeable(desired, target, VP)
    assert set(dom.users) == {"ann"}
    assert dom.catchall == Catchall("bounce")  # what apply writes
    result = diff(desired, target, VP)
    assert [c.id for c in result.changes] == [f"create-domain:{D}", f"create-user:ann@{D}",
                                              f"update-catchall:{D}"]
    assert result.changes[0].after.endswith("unknown recipients: bounce")
    assert result.changes[2].after == "bounce"
    assert [(p.domain, p.user) for p in result.problems] == [(D, long), (D, None)]
    assert result.problems[1].message == (
        f"unknown recipients are to be delivered to {long!r}, which is not created (see its "
        "problem): they bounce instead (vadddomain's default would delete them silently)")


def test_an_existing_domains_catch_all_to_a_withheld_user_is_left_as_it_is():
    long = "l" * 64
    dom = domain(D, ["ann", long], Catchall("deliver_to", long))
    desired = Desired({D: dom}, [])
    target = TargetFacts("new", {D: existing(D, ["ann"], ddir=f"{VP}/domains/{'x' * 90}")})
    withhold_unmakeable(desired, target, VP)
    assert set(dom.users) == {"ann"} and dom.catchall == Catchall("deliver_to", long)
    result = diff(desired, target, VP)
    assert not [c for c in result.changes if c.kind == "catchall"]
    assert [(p.domain, p.user) for p in result.problems] == [(D, long), (D, None)]
    assert result.problems[1].message == (
        f"unknown recipients are to be delivered to {long!r}, which is not created (see its "
        "problem): the catch-all is not changed")
