// aicache: the operator's command line. The commands are in commands.cc.

#include <iostream>

#include "commands.h"

int main(int argc, char** argv) { return aicache::cli::run(argc, argv, std::cout, std::cerr); }
