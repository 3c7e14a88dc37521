module libfibers/bench/peers

go 1.19
