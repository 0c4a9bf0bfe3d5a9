package main

const nicSource = "ethtool netlink (ETHTOOL_MSG_FEATURES_GET), features by name, as the nic engine reads them"
