#include <catch2/catch.hpp>

#include <cctype>
#include <set>
#include <string>

#include "kernel-feature-check/features.h"

using namespace criu::kfc;

TEST_CASE("every probe row is complete and named uniquely") {
    std::set<std::string> names;
    for (const auto& p : all_probes()) {
        INFO(p.name);
        REQUIRE(p.name != nullptr);
        CHECK(names.insert(p.name).second);
        CHECK(p.run != nullptr);
        REQUIRE(p.enables != nullptr);
        REQUIRE(p.fallback != nullptr);
        CHECK(std::string(p.enables).size() > 8);
        CHECK(std::string(p.fallback).size() > 8);
        CHECK((p.category == Category::Required || p.category == Category::SomeStates ||
               p.category == Category::Optional));
        for (char c : std::string(p.name))
            CHECK((std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) ||
                   c == '_'));
    }
    auto all = feature_names();
    CHECK(std::set<std::string>(all.begin(), all.end()).size() == all.size());
    CHECK(all.size() > all_probes().size());  // derived rows follow the probed ones
}

TEST_CASE("the table covers every feature the issue asks for") {
    for (const char* n :
         {"ptrace_seize", "map_files", "kcmp", "kcmp_epoll_tfd", "clone3_set_tid", "ns_last_pid", "pidfd_open",
          "pidfd_getfd", "ptrace_rseq_config", "ptrace_seccomp_filter", "pr_set_mm_map", "tcp_repair",
          "tcp_repair_window", "sock_diag_unix", "sock_diag_inet", "sock_diag_packet", "sock_diag_netlink", "uffd",
          "uffd_wp", "uffd_wp_async", "uffd_wp_unpopulated", "uffd_minor", "pagemap_scan", "soft_dirty", "memfd",
          "user_ns", "pid_ns", "net_ns", "mnt_ns", "ipc_ns", "uts_ns", "cgroup_ns", "time_ns", "cgroup_freezer_v1",
          "cgroup_freezer_v2", "vdso_layout", "xsave", "io_uring", "mem_dirty_track"}) {
        INFO(n);
        CHECK(canonical_feature_name(n) == n);
    }
}

TEST_CASE("CRIU feature names resolve to our rows, unknown names do not") {
    CHECK(canonical_feature_name("timens") == "time_ns");
    CHECK(canonical_feature_name("kcmp_epoll") == "kcmp_epoll_tfd");
    CHECK(canonical_feature_name("seccomp_filters") == "ptrace_seccomp_filter");
    CHECK(canonical_feature_name("no_such_feature").empty());
    CHECK(canonical_feature_name("").empty());
}

TEST_CASE("category names are the ones the output promises") {
    CHECK(category_name(Category::Required) == "required");
    CHECK(category_name(Category::SomeStates) == "needed for some states");
    CHECK(category_name(Category::Optional) == "optional");
    CHECK(category_key(Category::SomeStates) == "some_states");
}
