// The C header compiles as C++11, and the C++ wrapper as C++17, with every warning as an
// error, each included twice.
#include "rmqraft.h"
#include "rmqraft.h"
#if __cplusplus >= 201703L
#include "rmqraft.hpp"
#include "rmqraft.hpp"
#endif
#include <cstdint>
#include <type_traits>

static_assert(sizeof(rmqraft_result) == 4, "rmqraft_result is 32 bits");
static_assert(std::is_same<std::underlying_type<rmqraft_result>::type, std::uint32_t>::value, "fixed width");
static_assert(sizeof(rmqraft_entry_meta) == 24, "three uint64_t");

int main() {
    rmqraft_result r = RMQRAFT_OK;
    rmqraft_entry_meta meta = {1, 2, 3};
    return static_cast<int>(r) + static_cast<int>(meta.index) - 1;
}
