// The compiled parts of Boost.Beast and Boost.Asio (and Asio's SSL), once for the whole program:
// with BOOST_BEAST_SEPARATE_COMPILATION and BOOST_ASIO_SEPARATE_COMPILATION defined, the other
// units only declare them (boost/beast/src.hpp, boost/asio/impl/src.hpp).
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
