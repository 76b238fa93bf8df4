// contract §9: the --aws-config file. Good chains resolve to the steps botocore would take; every
// validation rule fails the load with an error naming the profile and the key; grants are
// exact; secrets never appear in an error.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "core/aws_config.hpp"
#include "core/result.hpp"

namespace membraned::core {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";
constexpr std::string_view kArn = "arn:aws:iam::123456789012:role/lambda-invoker";

AwsConfig load_ok(std::string_view text) {
  auto config = AwsConfig::load(text);
  if (!config.ok()) {
    ADD_FAILURE() << "load failed: " << config.error().field << ": " << config.error().message
                  << "\n" << text;
    return AwsConfig::load("").value();
  }
  return std::move(config).value();
}

CredentialChain chain_ok(const AwsConfig& config, std::string_view profile) {
  auto chain = config.chain(profile);
  if (!chain.ok()) {
    ADD_FAILURE() << "no chain for " << profile << ": " << chain.error().message;
    return {};
  }
  return std::move(chain).value();
}

// The load fails naming `key` in `field`, and the profile and key in the message.
Error load_error(std::string_view text, std::string_view profile, std::string_view key) {
  auto config = AwsConfig::load(text);
  if (config.ok()) {
    ADD_FAILURE() << "loaded, expected an error on profile " << profile << " key " << key << "\n"
                  << text;
    return {};
  }
  const Error& e = config.error();
  EXPECT_EQ(e.kind, ErrorKind::invalid_input);
  EXPECT_EQ(e.field, key) << e.message;
  EXPECT_NE(e.message.find("profile \"" + std::string(profile) + "\""), std::string::npos) << e.message;
  if (!key.empty()) {
    EXPECT_NE(e.message.find(key), std::string::npos) << e.message;
  }
  EXPECT_EQ(e.message.find(kSecret), std::string::npos) << e.message;
  return e;
}

// --- good chains -------------------------------------------------------------------------------

// Seed 000: the instance role (IMDS) assumes the Lambda role.
TEST(AwsConfig, InstanceRoleAssumesARole) {
  AwsConfig config = load_ok(R"(
[profile lambda]
role_arn = arn:aws:iam::123456789012:role/lambda-invoker
credential_source = Ec2InstanceMetadata
region = eu-west-1
membraned_tenants = 0123456789abcdef0123456789abcdef
)");
  CredentialChain chain = chain_ok(config, "lambda");
  EXPECT_EQ(chain.base.kind, BaseKind::imds);
  EXPECT_EQ(chain.base.profile, "lambda");
  EXPECT_FALSE(chain.base.credentials.has_value());
  ASSERT_EQ(chain.assume_roles.size(), 1u);
  const AssumeRoleStep& step = chain.assume_roles[0];
  EXPECT_EQ(step.profile, "lambda");
  EXPECT_EQ(step.role_arn, kArn);
  EXPECT_EQ(step.role_session_name, "membraned");
  EXPECT_FALSE(step.external_id.has_value());
  EXPECT_FALSE(step.duration.has_value());
  EXPECT_EQ(step.region, std::optional<std::string>("eu-west-1"));
}

// Seed 001: environment credentials sign directly.
TEST(AwsConfig, EnvironmentSourceWithoutRoleSignsDirectly) {
  AwsConfig config = load_ok("[profile env]\ncredential_source = Environment\nmembraned_tenants = *\n");
  CredentialChain chain = chain_ok(config, "env");
  EXPECT_EQ(chain.base.kind, BaseKind::environment);
  EXPECT_TRUE(chain.assume_roles.empty());
  ASSERT_NE(config.find("env"), nullptr);
  EXPECT_EQ(config.find("env")->credential_source, CredentialSource::environment);
}

TEST(AwsConfig, EcsContainerSource) {
  AwsConfig config = load_ok("[profile task]\ncredential_source = EcsContainer\nmembraned_tenants = t1\n");
  EXPECT_EQ(chain_ok(config, "task").base.kind, BaseKind::ecs);
}

TEST(AwsConfig, StaticKeys) {
  AwsConfig config = load_ok(std::string("[profile keys]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
                                         "aws_secret_access_key = ") +
                             std::string(kSecret) +
                             "\naws_session_token = TOKEN+/=\nmembraned_tenants = t1\n");
  CredentialChain chain = chain_ok(config, "keys");
  EXPECT_EQ(chain.base.kind, BaseKind::static_keys);
  EXPECT_EQ(chain.base.profile, "keys");
  ASSERT_TRUE(chain.base.credentials.has_value());
  EXPECT_EQ(chain.base.credentials->access_key_id, "AKIAIOSFODNN7EXAMPLE");
  EXPECT_EQ(chain.base.credentials->secret_access_key, kSecret);
  EXPECT_EQ(chain.base.credentials->session_token, std::optional<std::string>("TOKEN+/="));
  EXPECT_TRUE(chain.assume_roles.empty());
}

TEST(AwsConfig, TwoLevelAssumeRoleChain) {
  AwsConfig config = load_ok(std::string(R"(
[profile top]
role_arn = arn:aws:iam::111111111111:role/top
source_profile = middle
external_id = ext:id/1
role_session_name = top-session
duration_seconds = 1800
region = us-west-2
membraned_tenants = t1

[profile middle]
role_arn = arn:aws:iam::222222222222:role/middle
source_profile = base
region = eu-central-1

[profile base]
aws_access_key_id = AKIDBASE
aws_secret_access_key = )") + std::string(kSecret) + "\n");
  CredentialChain chain = chain_ok(config, "top");
  EXPECT_EQ(chain.base.kind, BaseKind::static_keys);
  EXPECT_EQ(chain.base.profile, "base");
  ASSERT_TRUE(chain.base.credentials.has_value());
  EXPECT_EQ(chain.base.credentials->access_key_id, "AKIDBASE");
  ASSERT_EQ(chain.assume_roles.size(), 2u);
  // Innermost first: the middle role is assumed with base's keys, then top's with middle's.
  EXPECT_EQ(chain.assume_roles[0].profile, "middle");
  EXPECT_EQ(chain.assume_roles[0].role_arn, "arn:aws:iam::222222222222:role/middle");
  EXPECT_EQ(chain.assume_roles[0].role_session_name, "membraned");
  EXPECT_FALSE(chain.assume_roles[0].external_id.has_value());
  EXPECT_EQ(chain.assume_roles[1].profile, "top");
  EXPECT_EQ(chain.assume_roles[1].role_arn, "arn:aws:iam::111111111111:role/top");
  EXPECT_EQ(chain.assume_roles[1].external_id, std::optional<std::string>("ext:id/1"));
  EXPECT_EQ(chain.assume_roles[1].role_session_name, "top-session");
  EXPECT_EQ(chain.assume_roles[1].duration, std::optional<std::chrono::seconds>(1800s));
  // As the AWS CLI does, every STS call of the chain uses the asked profile's region.
  EXPECT_EQ(chain.assume_roles[0].region, std::optional<std::string>("us-west-2"));
  EXPECT_EQ(chain.assume_roles[1].region, std::optional<std::string>("us-west-2"));

  // The sources are loaded (reachable) but granted to nobody; their own chains are shorter.
  ASSERT_NE(config.find("middle"), nullptr);
  ASSERT_NE(config.find("base"), nullptr);
  EXPECT_FALSE(config.granted("middle", "t1"));
  EXPECT_FALSE(config.granted("base", "t1"));
  CredentialChain middle = chain_ok(config, "middle");
  ASSERT_EQ(middle.assume_roles.size(), 1u);
  EXPECT_EQ(middle.assume_roles[0].region, std::optional<std::string>("eu-central-1"));
  EXPECT_EQ(config.profile_names(), (std::vector<std::string>{"base", "middle", "top"}));
}

TEST(AwsConfig, StaticKeysBelowTheTopWinOverTheSourcesRole) {
  AwsConfig config = load_ok(std::string(R"(
[profile top]
role_arn = arn:aws:iam::111111111111:role/top
source_profile = k
membraned_tenants = t1
[profile k]
role_arn = arn:aws:iam::444444444444:role/not-assumed-below-the-top
source_profile = other
aws_access_key_id = AKIDK
aws_secret_access_key = )") + std::string(kSecret) + R"(
[profile other]
credential_source = Environment
)");
  CredentialChain chain = chain_ok(config, "top");
  EXPECT_EQ(chain.base.kind, BaseKind::static_keys);
  EXPECT_EQ(chain.base.profile, "k");
  ASSERT_EQ(chain.assume_roles.size(), 1u);
  EXPECT_EQ(chain.assume_roles[0].profile, "top");
  // At the top, k's role wins over its keys, which sign the AssumeRole of k's role.
  CredentialChain k = chain_ok(config, "k");
  EXPECT_EQ(k.base.kind, BaseKind::environment);
  ASSERT_EQ(k.assume_roles.size(), 1u);
  EXPECT_EQ(k.assume_roles[0].role_arn, "arn:aws:iam::444444444444:role/not-assumed-below-the-top");
}

TEST(AwsConfig, ProfileMayBeItsOwnSourceWithStaticKeys) {
  AwsConfig config = load_ok(std::string(R"(
[profile self]
role_arn = arn:aws:iam::111111111111:role/self
source_profile = self
membraned_tenants = t1
aws_access_key_id = AKIDSELF
aws_secret_access_key = )") + std::string(kSecret) + "\n");
  CredentialChain chain = chain_ok(config, "self");
  EXPECT_EQ(chain.base.kind, BaseKind::static_keys);
  EXPECT_EQ(chain.base.profile, "self");
  ASSERT_EQ(chain.assume_roles.size(), 1u);
  EXPECT_EQ(chain.assume_roles[0].role_arn, "arn:aws:iam::111111111111:role/self");
}

TEST(AwsConfig, SourceWithCredentialSourceAndRoleAssumesBoth) {
  AwsConfig config = load_ok(R"(
[profile top]
role_arn = arn:aws:iam::111111111111:role/top
source_profile = instance
membraned_tenants = t1
[profile instance]
role_arn = arn:aws:iam::222222222222:role/hop
credential_source = Ec2InstanceMetadata
)");
  CredentialChain chain = chain_ok(config, "top");
  EXPECT_EQ(chain.base.kind, BaseKind::imds);
  EXPECT_EQ(chain.base.profile, "instance");
  ASSERT_EQ(chain.assume_roles.size(), 2u);
  EXPECT_EQ(chain.assume_roles[0].profile, "instance");
  EXPECT_EQ(chain.assume_roles[1].profile, "top");
}

TEST(AwsConfig, DefaultProfile) {
  AwsConfig config = load_ok("[default]\ncredential_source = Environment\nmembraned_tenants = t1\n");
  ASSERT_NE(config.find("default"), nullptr);
  EXPECT_TRUE(config.granted("default", "t1"));
  AwsConfig spelled = load_ok("[profile default]\ncredential_source = Environment\nmembraned_tenants = t1\n");
  EXPECT_TRUE(spelled.granted("default", "t1"));
  load_error("[default]\ncredential_source = Environment\nmembraned_tenants = t1\n"
             "[profile default]\ncredential_source = Environment\n",
             "default", "");
}

TEST(AwsConfig, WhitespaceCommentsAndCaseOfKeys) {
  AwsConfig config = load_ok(
      "# a comment\n; another\n"
      "[profile   spaced  ]\r\n"
      "\tROLE_ARN\t=   arn:aws:iam::111111111111:role/spaced   \r\n"
      "  Credential_Source=Ec2InstanceMetadata\r\n"
      "  duration_seconds =  900 \r\n"
      "membraned_tenants =   t1 \t  t2\t\tt3   \r\n");
  const AwsProfile* p = config.find("spaced");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->role_arn, std::optional<std::string>("arn:aws:iam::111111111111:role/spaced"));
  EXPECT_EQ(p->duration, std::optional<std::chrono::seconds>(900s));
  EXPECT_EQ(p->tenants, (std::vector<std::string>{"t1", "t2", "t3"}));
  EXPECT_TRUE(config.granted("spaced", "t2"));
  EXPECT_FALSE(config.granted("spaced", "t1 t2"));
  EXPECT_FALSE(config.granted("spaced", ""));
}

TEST(AwsConfig, UnknownKeysAndUnusedProfilesAreIgnored) {
  AwsConfig config = load_ok(R"(
top_level_key = ignored
[profile used]
credential_source = Environment
membraned_tenants = t1
output = json
cli_pager =
s3 =
  max_concurrent_requests = 20
[profile sso-only]
sso_session = corp
sso_account_id = 111111111111
region = us-east-1
[profile broken-but-unused]
credential_source = Nonsense
role_arn = not-an-arn
[sso-session corp]
sso_start_url = https://example.awsapps.com/start
[services local]
sts =
  endpoint_url = http://localhost:4566
)");
  EXPECT_NE(config.find("used"), nullptr);
  EXPECT_EQ(config.find("sso-only"), nullptr);
  EXPECT_EQ(config.find("broken-but-unused"), nullptr);
  EXPECT_EQ(config.find("corp"), nullptr);
  EXPECT_EQ(config.profile_names(), (std::vector<std::string>{"used"}));
  EXPECT_EQ(config.chain("sso-only").error().kind, ErrorKind::not_found);
}

TEST(AwsConfig, EmptyFileLoadsNothing) {
  AwsConfig config = load_ok("");
  EXPECT_TRUE(config.profile_names().empty());
  EXPECT_FALSE(config.granted("default", "t1"));
}

// --- grants ------------------------------------------------------------------------------------

TEST(AwsConfig, Grants) {
  AwsConfig config = load_ok(R"(
[profile listed]
credential_source = Environment
membraned_tenants = aaaa bbbb
[profile everyone]
credential_source = Environment
membraned_tenants = *
[profile source-only]
credential_source = Environment
[profile uses-source]
role_arn = arn:aws:iam::111111111111:role/x
source_profile = source-only
membraned_tenants = cccc
)");
  EXPECT_TRUE(config.granted("listed", "aaaa"));
  EXPECT_TRUE(config.granted("listed", "bbbb"));
  EXPECT_FALSE(config.granted("listed", "cccc"));
  EXPECT_FALSE(config.granted("listed", "AAAA"));  // exact
  EXPECT_FALSE(config.granted("listed", "aaa"));
  EXPECT_TRUE(config.granted("everyone", "anything"));
  EXPECT_TRUE(config.granted("everyone", "aaaa"));
  EXPECT_FALSE(config.granted("source-only", "aaaa"));  // no membraned_tenants: nobody
  EXPECT_NE(config.find("source-only"), nullptr);
  EXPECT_TRUE(config.granted("uses-source", "cccc"));
  EXPECT_FALSE(config.granted("missing", "aaaa"));
  EXPECT_FALSE(config.granted("*", "aaaa"));
  EXPECT_TRUE(config.find("everyone")->all_tenants);
}

TEST(AwsConfig, StarIsAloneAndTheListIsNotEmpty) {
  load_error("[profile p]\ncredential_source = Environment\nmembraned_tenants = * t1\n", "p",
             "membraned_tenants");
  load_error("[profile p]\ncredential_source = Environment\nmembraned_tenants =\n", "p",
             "membraned_tenants");
}

// --- validation errors -------------------------------------------------------------------------

TEST(AwsConfigErrors, UnknownCredentialSource) {
  Error e = load_error("[profile p]\ncredential_source = Ec2InstanceMetaData\nmembraned_tenants = t\n",
                       "p", "credential_source");
  EXPECT_NE(e.message.find("Ec2InstanceMetaData"), std::string::npos);
  load_error("[profile p]\ncredential_source = environment\nmembraned_tenants = t\n", "p",
             "credential_source");
}

TEST(AwsConfigErrors, ProfileWithoutCredentials) {
  Error e = load_error("[profile p]\nregion = us-east-1\nmembraned_tenants = t\n", "p", "");
  EXPECT_NE(e.message.find("no credentials"), std::string::npos);
}

TEST(AwsConfigErrors, RoleArnNeedsExactlyOneSource) {
  load_error(R"(
[profile p]
role_arn = arn:aws:iam::111111111111:role/x
source_profile = q
credential_source = Environment
membraned_tenants = t
[profile q]
credential_source = Environment
)",
             "p", "source_profile");
  Error e = load_error(
      "[profile p]\nrole_arn = arn:aws:iam::111111111111:role/x\nmembraned_tenants = t\n", "p",
      "role_arn");
  EXPECT_NE(e.message.find("source_profile or credential_source"), std::string::npos);
}

TEST(AwsConfigErrors, SourceProfileMustExist) {
  Error e = load_error(
      "[profile p]\nrole_arn = arn:aws:iam::111111111111:role/x\nsource_profile = ghost\n"
      "membraned_tenants = t\n",
      "p", "source_profile");
  EXPECT_NE(e.message.find("ghost"), std::string::npos);
}

TEST(AwsConfigErrors, SourceProfileWithoutSourceOfItsOwnIsReported) {
  // The source is loaded because it is reachable, and fails on its own rules.
  load_error(R"(
[profile p]
role_arn = arn:aws:iam::111111111111:role/x
source_profile = q
membraned_tenants = t
[profile q]
region = us-east-1
)",
             "q", "");
}

TEST(AwsConfigErrors, StaticKeysHalfGiven) {
  load_error("[profile p]\naws_access_key_id = AKID\nmembraned_tenants = t\n", "p",
             "aws_secret_access_key");
  load_error("[profile p]\naws_secret_access_key = " + std::string(kSecret) + "\nmembraned_tenants = t\n",
             "p", "aws_access_key_id");
  load_error("[profile p]\naws_session_token = tok\ncredential_source = Environment\nmembraned_tenants = t\n",
             "p", "aws_session_token");
  // A malformed key id is named, and the secret next to it is not quoted.
  load_error("[profile p]\naws_access_key_id = AK/ID\naws_secret_access_key = " + std::string(kSecret) +
                 "\nmembraned_tenants = t\n",
             "p", "aws_access_key_id");
  load_error("[profile p]\naws_access_key_id = AKID\naws_secret_access_key =\nmembraned_tenants = t\n",
             "p", "aws_secret_access_key");
}

TEST(AwsConfigErrors, StaticKeysWithCredentialSource) {
  load_error("[profile p]\naws_access_key_id = AKID\naws_secret_access_key = " + std::string(kSecret) +
                 "\ncredential_source = Environment\nmembraned_tenants = t\n",
             "p", "credential_source");
}

TEST(AwsConfigErrors, RoleOptionsWithoutRoleArn) {
  for (std::string_view key : {"source_profile", "external_id", "role_session_name", "duration_seconds"}) {
    std::string value = key == "duration_seconds" ? "900" : key == "source_profile" ? "q" : "abcd";
    load_error("[profile p]\ncredential_source = Environment\n" + std::string(key) + " = " + value +
                   "\nmembraned_tenants = t\n[profile q]\ncredential_source = Environment\n",
               "p", key);
  }
}

TEST(AwsConfigErrors, DurationSecondsRange) {
  auto doc = [](std::string_view d) {
    return "[profile p]\nrole_arn = arn:aws:iam::111111111111:role/x\ncredential_source = Environment\n"
           "duration_seconds = " + std::string(d) + "\nmembraned_tenants = t\n";
  };
  for (std::string_view bad : {"899", "43201", "0", "-900", "abc", "3600s", "1e3", "9999999999"}) {
    load_error(doc(bad), "p", "duration_seconds");
  }
  EXPECT_EQ(load_ok(doc("900")).find("p")->duration, std::optional<std::chrono::seconds>(900s));
  EXPECT_EQ(load_ok(doc("43200")).find("p")->duration, std::optional<std::chrono::seconds>(43200s));
}

TEST(AwsConfigErrors, RoleArnSessionNameExternalIdAndRegionSyntax) {
  auto doc = [](std::string_view extra) {
    return "[profile p]\nrole_arn = arn:aws:iam::111111111111:role/x\ncredential_source = Environment\n" +
           std::string(extra) + "\nmembraned_tenants = t\n";
  };
  load_error("[profile p]\nrole_arn = role/x-without-arn-prefix\ncredential_source = Environment\n"
             "membraned_tenants = t\n",
             "p", "role_arn");
  load_error(doc("role_session_name = has space"), "p", "role_session_name");
  load_error(doc("role_session_name = x"), "p", "role_session_name");
  load_error(doc("role_session_name = " + std::string(65, 's')), "p", "role_session_name");
  EXPECT_EQ(load_ok(doc("role_session_name = a+b=c,d.e@f-g_h")).find("p")->role_session_name,
            "a+b=c,d.e@f-g_h");
  load_error(doc("external_id = x"), "p", "external_id");
  load_error(doc("external_id = bad id"), "p", "external_id");
  load_error(doc("region = us-east-1.evil.example/"), "p", "region");
  load_error(doc("region = US-EAST-1"), "p", "region");
  load_error(doc("region ="), "p", "region");
}

TEST(AwsConfigErrors, KeyGivenTwiceInAnyCase) {
  load_error("[profile p]\ncredential_source = Environment\nCREDENTIAL_SOURCE = Environment\n"
             "membraned_tenants = t\n",
             "p", "credential_source");
}

TEST(AwsConfigErrors, ProfileNameMustBeUsable) {
  load_error("[profile bad/name]\ncredential_source = Environment\nmembraned_tenants = t\n", "bad/name", "");
  load_error("[profile \"quoted\"]\ncredential_source = Environment\nmembraned_tenants = t\n",
             "\"quoted\"", "");
}

TEST(AwsConfigErrors, SyntaxErrorsNameTheLine) {
  for (std::string_view text : {"[profile p\ncredential_source = Environment\n",
                                "[profile p]\nthis line has no equals sign\n",
                                "[profile p]\ncredential_source = Environment\n[profile p]\nregion = x\n"}) {
    auto config = AwsConfig::load(text);
    ASSERT_FALSE(config.ok()) << text;
    EXPECT_NE(config.error().message.find("line "), std::string::npos) << config.error().message;
  }
}

// --- cycles ------------------------------------------------------------------------------------

TEST(AwsConfigErrors, TwoProfileCycle) {
  Error e = load_error(R"(
[profile a]
role_arn = arn:aws:iam::111111111111:role/a
source_profile = b
membraned_tenants = t
[profile b]
role_arn = arn:aws:iam::111111111111:role/b
source_profile = a
)",
                       "b", "source_profile");
  EXPECT_NE(e.message.find("a -> b -> a"), std::string::npos) << e.message;
}

TEST(AwsConfigErrors, ThreeProfileCycleReachedFromOutside) {
  Error e = load_error(R"(
[profile entry]
role_arn = arn:aws:iam::111111111111:role/entry
source_profile = x
membraned_tenants = t
[profile x]
role_arn = arn:aws:iam::111111111111:role/x
source_profile = y
[profile y]
role_arn = arn:aws:iam::111111111111:role/y
source_profile = z
[profile z]
role_arn = arn:aws:iam::111111111111:role/z
source_profile = x
)",
                       "z", "source_profile");
  EXPECT_NE(e.message.find("x -> y -> z -> x"), std::string::npos) << e.message;
  EXPECT_EQ(e.message.find("entry ->"), std::string::npos) << e.message;
}

TEST(AwsConfigErrors, CycleIsAnErrorEvenWhereStaticKeysWouldStopTheWalk) {
  // botocore would stop at b's keys when resolving a; contract §9 makes any cycle a start-up error.
  Error e = load_error(std::string(R"(
[profile a]
role_arn = arn:aws:iam::111111111111:role/a
source_profile = b
membraned_tenants = t
[profile b]
role_arn = arn:aws:iam::111111111111:role/b
source_profile = a
aws_access_key_id = AKIDB
aws_secret_access_key = )") + std::string(kSecret) + "\n",
                       "b", "source_profile");
  EXPECT_NE(e.message.find("a -> b -> a"), std::string::npos) << e.message;
}

TEST(AwsConfigErrors, SelfReferenceWithoutStaticKeysIsACycle) {
  Error e = load_error(
      "[profile s]\nrole_arn = arn:aws:iam::111111111111:role/s\nsource_profile = s\n"
      "membraned_tenants = t\n",
      "s", "source_profile");
  EXPECT_NE(e.message.find("s -> s"), std::string::npos) << e.message;
}

TEST(AwsConfigErrors, CycleAmongUnusedProfilesIsIgnored) {
  AwsConfig config = load_ok(R"(
[profile used]
credential_source = Environment
membraned_tenants = t
[profile a]
role_arn = arn:aws:iam::111111111111:role/a
source_profile = b
[profile b]
role_arn = arn:aws:iam::111111111111:role/b
source_profile = a
)");
  EXPECT_EQ(config.profile_names(), (std::vector<std::string>{"used"}));
}

TEST(CredentialSourceNames, RoundTrip) {
  for (CredentialSource s : {CredentialSource::environment, CredentialSource::ec2_instance_metadata,
                             CredentialSource::ecs_container}) {
    EXPECT_EQ(parse_credential_source(credential_source_name(s)), std::optional(s));
  }
  EXPECT_FALSE(parse_credential_source("ECSContainer").has_value());
  EXPECT_FALSE(parse_credential_source("").has_value());
}

TEST(ProfileNames, Characters) {
  EXPECT_TRUE(is_profile_name("prod-lambda_1.x@corp+a=b,c"));
  EXPECT_TRUE(is_profile_name(std::string(128, 'p')));
  EXPECT_FALSE(is_profile_name(std::string(129, 'p')));
  EXPECT_FALSE(is_profile_name(""));
  EXPECT_FALSE(is_profile_name("with space"));
  EXPECT_FALSE(is_profile_name("a/b"));
  EXPECT_FALSE(is_profile_name("a\nb"));
  EXPECT_FALSE(is_profile_name("caf\xc3\xa9"));
}

// The file may be shared with the AWS CLI: its keys are ignored, a misspelling of ours is not.
TEST(AwsConfig, AKeyOneTypoFromOneMembranedReadsIsRefusedOthersAreIgnored) {
  auto e = load_error("[profile x]\ncredential_source = Environment\nregoin = us-east-1\nmembraned_tenants = *\n",
                      "x", "regoin");
  EXPECT_NE(e.message.find("did you mean region?"), std::string::npos) << e.message;
  load_error("[profile x]\ncredential_source = Environment\nmembraned_tenant = *\n", "x", "membraned_tenant");
  load_error("[profile y]\ncredential_source = Environment\nmembrane_tenants = *\n", "y", "membrane_tenants");
  load_ok("[profile x]\ncredential_source = Environment\nmembraned_tenants = *\noutput = json\n"
          "cli_pager =\nsso_region = eu-west-1\nmax_attempts = 3\nretry_mode = standard\n");
  // A profile membraned does not use is not its to judge.
  load_ok("[profile other]\nregoin = us-east-1\n");
}

}  // namespace
}  // namespace membraned::core
