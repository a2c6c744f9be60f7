#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "criu/core/proc_parse.h"

using namespace criu;

TEST_CASE("maps line with a path containing spaces and a deleted suffix") {
    auto e = parse_maps_line("7f0000001000-7f0000003000 rw-s 00002000 08:01 123456     /tmp/my dir/a file (1) (deleted)");
    REQUIRE(e);
    CHECK(e->start == 0x7f0000001000);
    CHECK(e->end == 0x7f0000003000);
    CHECK(e->read);
    CHECK(e->write);
    CHECK_FALSE(e->exec);
    CHECK(e->shared);
    CHECK(e->pgoff == 0x2000);
    CHECK(e->dev_major == 8);
    CHECK(e->dev_minor == 1);
    CHECK(e->ino == 123456);
    CHECK(e->path == "/tmp/my dir/a file (1)");
    CHECK(e->deleted);
}

TEST_CASE("maps lines: anonymous, pseudo paths, escaped newline, hex device numbers") {
    auto anon = parse_maps_line("55d0c0000000-55d0c0021000 ---p 00000000 00:00 0 ");
    REQUIRE(anon);
    CHECK(anon->path.empty());
    CHECK_FALSE(anon->read);
    CHECK_FALSE(anon->deleted);

    auto heap = parse_maps_line("55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]");
    REQUIRE(heap);
    CHECK(heap->path == "[heap]");

    auto nl = parse_maps_line("1000-2000 r-xp 00000000 fd:0a 42 /a\\012b");
    REQUIRE(nl);
    CHECK(nl->path == "/a\nb");
    CHECK(nl->dev_major == 0xfd);
    CHECK(nl->dev_minor == 0xa);

    // A file whose own name ends in " (deleted)" and is deleted shows the suffix twice.
    auto twice = parse_maps_line("1000-2000 r--p 00000000 08:01 7 /x (deleted) (deleted)");
    REQUIRE(twice);
    CHECK(twice->path == "/x (deleted)");
    CHECK(twice->deleted);

    auto shm = parse_maps_line("7f00-8f00 rw-s 00000000 00:01 2050 /dev/zero (deleted)");
    REQUIRE(shm);
    CHECK(shm->path == "/dev/zero");
    CHECK(shm->deleted);
    CHECK(shm->ino == 2050);
}

TEST_CASE("malformed maps lines are errors that quote the line") {
    CHECK_FALSE(parse_maps_line("garbage"));
    CHECK_FALSE(parse_maps_line("2000-1000 r--p 00000000 08:01 7"));
    CHECK_FALSE(parse_maps_line("1000-2000 r--p 00000000 0801 7"));
    auto r = parse_maps("1000-2000 r--p 00000000 08:01 7 /a\nbad line\n");
    REQUIRE_FALSE(r);
    CHECK(r.error().str().find("line 2") != std::string::npos);
}

TEST_CASE("smaps blocks carry VmFlags and kB counters") {
    const char* text =
        "7ffd0000-7ffd1000 rw-p 00000000 00:00 0                          [stack]\n"
        "Size:                132 kB\n"
        "Rss:                  12 kB\n"
        "THPeligible:    0\n"
        "VmFlags: rd wr mr mw me gd ac \n"
        "7f00-8f00 rw-s 00000000 00:05 99 /name with: colon\n"
        "Size:                  4 kB\n"
        "VmFlags: rd wr sh mr mw me ms dd\n";
    auto r = parse_smaps(text);
    REQUIRE(r);
    REQUIRE(r->size() == 2);
    CHECK((*r)[0].path == "[stack]");
    CHECK((*r)[0].has_flag("gd"));
    CHECK_FALSE((*r)[0].has_flag("dd"));
    CHECK((*r)[0].kb.at("Rss") == 12);
    CHECK((*r)[1].path == "/name with: colon");
    CHECK((*r)[1].has_flag("dd"));
    CHECK((*r)[1].vm_flags.size() == 8);
}

TEST_CASE("status fields: signals, caps, ids, groups, umask") {
    const char* text =
        "Name:\tmy prog: x\n"
        "Umask:\t0027\n"
        "State:\tS (sleeping)\n"
        "Tgid:\t100\n"
        "Pid:\t101\n"
        "PPid:\t1\n"
        "TracerPid:\t0\n"
        "Uid:\t1000\t1001\t1002\t1003\n"
        "Gid:\t20\t21\t22\t23\n"
        "Groups:\t4 24 27 \n"
        "Threads:\t3\n"
        "SigPnd:\t0000000000000100\n"
        "ShdPnd:\t0000000000004000\n"
        "SigBlk:\tfffffffe7ffbfeff\n"
        "SigIgn:\t0000000000001000\n"
        "SigCgt:\t0000000180000000\n"
        "CapInh:\t0000000000000000\n"
        "CapPrm:\t000001ffffffffff\n"
        "CapEff:\t000001ffffffffff\n"
        "CapBnd:\t000001ffffffffff\n"
        "CapAmb:\t0000000000000001\n"
        "NoNewPrivs:\t1\n"
        "Seccomp:\t2\n"
        "Seccomp_filters:\t1\n"
        "x86_Thread_features:\t\n";
    auto s = parse_status(text);
    REQUIRE(s);
    CHECK(s->name == "my prog: x");
    CHECK(s->state == 'S');
    CHECK(s->tgid == 100);
    CHECK(s->pid == 101);
    CHECK(s->ppid == 1);
    CHECK(s->uid[1] == 1001);
    CHECK(s->gid[3] == 23);
    CHECK(s->groups == std::vector<uint32_t>{4, 24, 27});
    CHECK(s->sig_pnd == 0x100);
    CHECK(s->shd_pnd == 0x4000);
    CHECK(s->sig_blk == 0xfffffffe7ffbfeffull);
    CHECK(s->cap_prm == 0x1ffffffffffull);
    CHECK(s->cap_amb == 1);
    CHECK(s->no_new_privs);
    CHECK(s->seccomp == 2);
    CHECK(s->seccomp_filters == 1);
    REQUIRE(s->umask);
    CHECK(*s->umask == 027);
    CHECK(s->threads == 3);
    CHECK(s->x86_thread_features.empty());
}

TEST_CASE("stat with a comm holding spaces and parentheses") {
    std::string text =
        "4242 (a) b (c)) S 1 4242 4242 34816 4242 4194560 100 0 0 0 1 2 0 0 20 0 2 0 12345 1000000 "
        "200 18446744073709551615 94000000000000 94000000004000 140730000000000 0 0 0 0 4096 0 0 0 0 17 1 "
        "0 0 0 0 0 94000000010000 94000000011000 94000000020000 140730000001000 140730000001100 "
        "140730000001100 140730000001200 0\n";
    auto s = parse_stat(text);
    REQUIRE(s);
    CHECK(s->pid == 4242);
    CHECK(s->comm == "a) b (c)");
    CHECK(s->state == 'S');
    CHECK(s->ppid == 1);
    CHECK(s->session == 4242);
    CHECK(s->nice == 0);
    CHECK(s->num_threads == 2);
    CHECK(s->start_code == 94000000000000ull);
    CHECK(s->end_code == 94000000004000ull);
    CHECK(s->start_stack == 140730000000000ull);
    CHECK(s->exit_signal == 17);
    CHECK(s->start_data == 94000000010000ull);
    CHECK(s->end_data == 94000000011000ull);
    CHECK(s->start_brk == 94000000020000ull);
    CHECK(s->arg_start == 140730000001000ull);
    CHECK(s->env_end == 140730000001200ull);
    CHECK(s->exit_code == 0);
    CHECK_FALSE(parse_stat("12 (x) S 1 2"));
    CHECK_FALSE(parse_stat("no parens at all"));
}

TEST_CASE("own stat parses and matches getpid") {
    auto s = read_stat(getpid());
    REQUIRE(s);
    CHECK(s->pid == getpid());
    CHECK(s->ppid == getppid());
    CHECK(s->start_brk != 0);
}

TEST_CASE("fdinfo: common keys and repeated extra keys") {
    const char* text =
        "pos:\t0\n"
        "flags:\t02004002\n"
        "mnt_id:\t15\n"
        "ino:\t1057\n"
        "tfd:        9 events:       19 data:                9  pos:0 ino:6f5c sdev:f\n"
        "tfd:       10 events:       19 data:                a  pos:0 ino:6f5d sdev:f\n"
        "eventfd-count: 2a\n";
    auto f = parse_fdinfo(text);
    REQUIRE(f);
    CHECK(f->pos == 0);
    CHECK(f->flags == 02004002);
    CHECK(f->mnt_id == 15);
    CHECK(f->ino == 1057);
    CHECK(f->extra.count("tfd") == 2);
    CHECK(f->extra.find("tfd")->second.starts_with("9 events:"));
    CHECK(f->get("eventfd-count") == std::optional<std::string_view>("2a"));
    CHECK_FALSE(f->get("nothing"));
    CHECK_FALSE(parse_fdinfo("flags:\t02\n"));
    CHECK_FALSE(parse_fdinfo("pos:\tx\nflags:\t02\n"));
}

TEST_CASE("timers file") {
    const char* text =
        "ID: 0\n"
        "signal: 14/0000000000000000\n"
        "notify: signal/pid.123\n"
        "ClockID: 1\n"
        "ID: 7\n"
        "signal: 34/00007ffc12345678\n"
        "notify: thread/tid.124\n"
        "ClockID: 0\n";
    auto t = parse_timers(text);
    REQUIRE(t);
    REQUIRE(t->size() == 2);
    CHECK((*t)[0].id == 0);
    CHECK((*t)[0].signo == 14);
    CHECK((*t)[0].notify == SIGEV_SIGNAL);
    CHECK((*t)[0].notify_pid == 123);
    CHECK((*t)[0].clock_id == 1);
    CHECK((*t)[1].sigval == 0x7ffc12345678ull);
    CHECK((*t)[1].notify == (SIGEV_THREAD | SIGEV_THREAD_ID));
    CHECK((*t)[1].notify_pid == 124);
    CHECK_FALSE(parse_timers("signal: 1/0\n"));
}

TEST_CASE("pid lists, task listing and vanished processes") {
    auto l = parse_pid_list("12 13 4000 \n");
    REQUIRE(l);
    CHECK(*l == std::vector<pid_t>{12, 13, 4000});
    auto empty = parse_pid_list("");
    REQUIRE(empty);
    CHECK(empty->empty());

    auto tasks = list_tasks(getpid());
    REQUIRE(tasks);
    CHECK(std::find(tasks->begin(), tasks->end(), getpid()) != tasks->end());

    // A pid that does not exist gives ESRCH, not a generic ENOENT.
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    int st;
    waitpid(child, &st, 0);
    auto gone = read_status(child);
    REQUIRE_FALSE(gone);
    CHECK(gone.error().err() == ESRCH);
    auto gone_tasks = list_tasks(child);
    REQUIRE_FALSE(gone_tasks);
    CHECK(gone_tasks.error().err() == ESRCH);
}

TEST_CASE("own auxv ends with AT_NULL and own maps parse") {
    auto a = read_auxv(getpid());
    REQUIRE(a);
    REQUIRE(a->size() >= 2);
    CHECK((*a)[a->size() - 2] == 0);
    auto m = read_smaps(getpid());
    REQUIRE(m);
    bool stack = false;
    for (auto& e : *m)
        stack |= e.path == "[stack]" && e.has_flag("gd");
    CHECK(stack);
}
