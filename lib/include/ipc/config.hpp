// libipc build configuration: the export macro.
//
// The library is built with hidden visibility; every public class and function
// carries IPC_API so that exactly the documented surface is exported.
#pragma once

#define IPC_API __attribute__((visibility("default")))
